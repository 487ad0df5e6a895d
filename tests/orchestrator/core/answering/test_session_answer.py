"""One owner of a session's answer (`core/answering/answer.py`) on both channels, against the
fake vLLM: a chat completion with `X-Session-Id` stops where the session's context judges the
answer whole, as a `submit` does, runs the context's step for a whole answer once, reports
its fields in the usage, and closes the session's final whether it ends, fails or is left.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from orchestrator.core.contexts import Ending
from orchestrator.text_to_sql.extract import statement_complete
from testkit.fake_vllm import FakeVLLM
from tests.fakes import SessionClient, wait_until
from tests.helpers import SYSTEM
from tests.sessions import App, StartApp, started

OPENING = "```sql\n"
QUERY = ("SELECT", " COUNT(*)", " FROM", " customers", ";")
GOES_ON = ("\n\n", "This", " query", " counts", " them", ".")
WHOLE = OPENING + "".join(QUERY) + "\n\n"  # where the context ends it: past the `;`


class JudgingContext:
    """A text-to-SQL-like context: it ends an answer once its query is complete, and its
    step for a whole answer is recorded (no database)."""

    system_prompt = SYSTEM
    openings = ("Question: ", OPENING)
    stop_sequences = ("```",)

    def __init__(self) -> None:
        self.answers: list[str] = []

    def answer_complete(self, answer: str) -> Ending | None:
        end = statement_complete(answer)
        return None if end is None else Ending("sql_complete", end)

    async def after_answer(self, answer: str) -> dict[str, Any]:
        self.answers.append(answer)
        return {"sql": "SELECT COUNT(*) FROM customers", "columns": ["count"], "rows": [[3]]}


async def judged_session(
    start_app: StartApp, fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> tuple[App, SessionClient, JudgingContext]:
    app = await start_app()
    context = JudgingContext()
    monkeypatch.setattr(app.services.contexts, "get", lambda name: context)
    fake.reply = (*QUERY, *GOES_ON)
    fake.token_delay_s = 0.02  # the stream is still open when the server ends it
    client = await started(app, context={"database": "shop"}, warmups="off")
    return app, client, context


async def sdk(app: App, client: SessionClient) -> AsyncOpenAI:
    session_id = str(client.of_type("ready")[0]["session_id"])
    return AsyncOpenAI(
        base_url=f"{app.url}/v1",
        api_key="unused",
        http_client=await app.http(),
        default_headers={"X-Session-Id": session_id},
        max_retries=0,
    )


USER: Any = [{"role": "user", "content": "How many customers are there?"}]


async def test_an_http_answer_stops_where_the_context_judges_it_whole_as_a_submit_does(
    start_app: StartApp, fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client, context = await judged_session(start_app, fake, monkeypatch)
    await client.send(type="submit", text=USER[0]["content"], seq=1)
    done = await client.next("done")
    assert (done["text"], done["stop_reason"]) == (WHOLE, "sql_complete")

    http = await sdk(app, client)
    whole = await http.chat.completions.create(model="m", messages=USER)
    assert whole.choices[0].message.content == WHOLE
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert whole.usage.model_extra is not None
    extension = whole.usage.model_extra["prefill_ahead"]
    assert (extension["sql"], extension["rows"]) == (done["sql"], done["rows"])

    stream = await http.chat.completions.create(model="m", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == WHOLE
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    (last,) = [chunk for chunk in chunks if chunk.usage is not None]
    assert last.usage is not None
    assert last.usage.model_extra is not None
    assert last.usage.model_extra["prefill_ahead"]["rows"] == [[3]]

    assert context.answers == [WHOLE] * 3  # the context's step ran once for each answer
    await wait_until(lambda: fake.stream_disconnects == 3, what="each upstream stream to close")


async def test_an_http_answer_left_half_way_closes_the_sessions_final(
    start_app: StartApp, fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client, context = await judged_session(start_app, fake, monkeypatch)
    fake.token_delay_s = 0.5
    session_id = str(client.of_type("ready")[0]["session_id"])
    http = await app.http(over_the_port=True)
    body = {"messages": USER, "stream": True}
    async with http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"X-Session-Id": session_id}
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # the first token: the client goes away
    await wait_until(lambda: fake.stream_disconnects == 1, what="the upstream stream to close")
    assert context.answers == []  # not whole: the context's step never ran

    fake.token_delay_s = 0.0
    await client.send(type="submit", text=USER[0]["content"], seq=1)
    done = await client.next("done")  # not `busy`: the HTTP answer's final was closed
    assert done["text"] == WHOLE


async def test_an_http_answer_while_a_submit_streams_is_refused_as_busy(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await started(app, warmups="off")
    fake.hold_streams()
    await client.send(type="submit", text="hello", seq=1)
    await wait_until(lambda: fake.streams_open == 1, what="the submit's stream")
    http: httpx.AsyncClient = await app.http()
    session_id = str(client.of_type("ready")[0]["session_id"])
    busy = await http.post(
        "/v1/chat/completions", json={"messages": USER}, headers={"X-Session-Id": session_id}
    )
    assert busy.status_code == 400
    assert busy.json()["error"]["code"] == "busy"
    fake.release_streams()
    await client.next("done")
