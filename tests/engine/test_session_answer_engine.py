"""One owner of a session's answer on both channels, on the real vLLM and PostgreSQL: a
text-to-SQL question submitted over HTTP (`X-Session-Id`, the stock `openai` SDK) stops at
its query as on the WebSocket, and its usage reports the query's rows as `done` does."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI

pytestmark = pytest.mark.engine
QUESTION = "How many stores are there?"
SQL_FIELDS = ("sql", "columns", "rows", "truncated")


async def test_a_sql_answer_over_http_stops_at_the_query_and_carries_its_rows(
    sql_app_url: str,
) -> None:
    ws_url = sql_app_url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url, max_size=2**24) as ws:
        await ws.send(json.dumps({"type": "start", "context": {"database": "demo"}}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        await ws.send(json.dumps({"type": "submit", "text": QUESTION}))
        frames = [json.loads(await ws.recv())]
        while frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(await ws.recv()))
        done = frames[-1]
        assert done["type"] == "done", done
        headers = {"X-Session-Id": ready["session_id"]}
        async with AsyncOpenAI(
            base_url=f"{sql_app_url}/v1", api_key="unused", default_headers=headers
        ) as client:
            user: Any = [{"role": "user", "content": QUESTION}]
            whole = await client.chat.completions.create(model="ignored", messages=user)
            stream = await client.chat.completions.create(
                model="ignored", messages=user, stream=True
            )
            chunks = [chunk async for chunk in stream]
    print("done:", {k: done.get(k) for k in ("text", "stop_reason", *SQL_FIELDS)})
    assert done["stop_reason"] in ("stop_sequence", "sql_complete"), done["text"]
    assert isinstance(done["sql"], str), done
    assert done["rows"], done

    content = whole.choices[0].message.content
    print("HTTP:", content, whole.usage)
    assert content == done["text"]  # the same prompt, greedy, stopped at the same place
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert whole.usage.model_extra is not None
    extension = whole.usage.model_extra["prefill_ahead"]
    assert {name: extension[name] for name in SQL_FIELDS} == {n: done[n] for n in SQL_FIELDS}

    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == done["text"]
    (last,) = [chunk for chunk in chunks if chunk.usage is not None]
    assert last.usage is not None
    assert last.usage.model_extra is not None
    assert last.usage.model_extra["prefill_ahead"]["rows"] == done["rows"]
