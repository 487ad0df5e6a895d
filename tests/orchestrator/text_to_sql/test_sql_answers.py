"""A text-to-SQL session's answer against the fake vLLM and the demo dataset in a real embedded
PostgreSQL: the answer stops at the end of its query (vLLM's stop sequence on the closing
fence, or the server's own judgement when the model goes on past the `;`), the query runs and
its rows come back, and the `done` frame says why generation stopped. A chat is untouched.
The answer's first token carries its TTFT."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from orchestrator.db.server import Database
from orchestrator.text_to_sql.prompt import ANSWER_OPENING, STOP_SEQUENCES
from orchestrator.text_to_sql.seed import DEFAULT_DATASET_ROOT
from testkit.fake_vllm import FakeVLLM
from tests.fakes import SessionClient, wait_until
from tests.sessions import Defaults, StartApp, started

pytestmark = pytest.mark.postgres

QUERY = ("SELECT", " COUNT(*)", " FROM", " customers", ";")
EXPLANATION = ("\n\n", "This", " query", " counts", " the", " customers", ".")


@pytest_asyncio.fixture(scope="module")
async def db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    database = Database(None, tmp_path_factory.mktemp("sql-answers-db"))
    await database.start()
    yield database
    await database.stop()


@pytest.fixture(scope="module")
def orchestrator_defaults(db: Database) -> Defaults:
    settings = {
        "enable_database": True,
        "database_url": db.admin_url,
        "datasets_dir": DEFAULT_DATASET_ROOT,
    }
    return Defaults(settings=settings)


async def ask(
    start_app: StartApp, question: str = "How many customers are there?"
) -> SessionClient:
    client = await started(await start_app(), context={"database": "demo"})
    await client.send(type="submit", text=question, seq=1)
    return client


async def test_the_answer_stops_at_the_closing_fence_and_its_rows_come_back(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.reply = (*QUERY, "\n", "```", *EXPLANATION)
    client = await ask(start_app)
    done = await client.next("done")

    (final,) = fake.finals
    assert final.body["stop"] == list(STOP_SEQUENCES)
    assert final.body["include_stop_str_in_output"] is True
    text = "".join(frame["text"] for frame in client.of_type("token"))
    assert text == done["text"] == ANSWER_OPENING + "".join(QUERY) + "\n```"  # no explanation
    assert done["finish_reason"] == "stop"
    assert done["stop_reason"] == "stop_sequence"
    assert done["completion_tokens"] == len(QUERY) + 2
    assert done["sql"] == "SELECT COUNT(*) FROM customers"
    assert done["columns"] == ["count"]
    assert done["rows"][0][0] > 0
    assert "refused" not in done


async def test_the_server_ends_an_answer_that_goes_on_past_its_query(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.reply = (*QUERY, *EXPLANATION, "\n```")  # no fence after the query: it would go on
    fake.token_delay_s = 0.05  # so that the stream is still open when the server ends it
    client = await ask(start_app)
    done = await client.next("done")

    text = "".join(frame["text"] for frame in client.of_type("token"))
    assert text == done["text"] == ANSWER_OPENING + "".join(QUERY) + "\n\n"
    assert done["finish_reason"] == "stop"
    assert done["stop_reason"] == "sql_complete"
    assert done["sql"] == "SELECT COUNT(*) FROM customers"
    assert done["rows"][0][0] > 0
    await wait_until(lambda: fake.stream_disconnects == 1, what="the upstream stream to close")


async def test_an_answer_that_runs_out_says_length_or_eos(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.reply = QUERY  # the model's end of text right after the query
    client = await ask(start_app)
    done = await client.next("done")
    assert done["stop_reason"] == "eos"
    assert done["sql"] == "SELECT COUNT(*) FROM customers"


async def test_a_chat_answer_has_no_stop_sequence_and_runs_to_its_end(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.reply = (*QUERY, *EXPLANATION, "\n```", " more")
    client = await started(await start_app())
    await client.send(type="submit", text="How many customers are there?", seq=1)
    done = await client.next("done")

    (final,) = fake.finals
    assert "stop" not in final.body
    assert "include_stop_str_in_output" not in final.body
    assert done["text"] == "".join(fake.reply)
    assert done["stop_reason"] == "eos"
    assert "sql" not in done


async def test_the_first_token_carries_the_ttft_the_prompt_and_the_warmed_tokens(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.reply = (*QUERY, "\n```")
    client = await started(await start_app(), context={"database": "demo"})
    await client.next("warm", lambda frame: frame["seq"] == 0)  # the schema is warmed
    await client.send(type="submit", text="How many customers are there?", seq=1)
    done = await client.next("done")

    first, *others = client.of_type("token")
    assert first["ttft_ms"] == done["ttft_ms"]
    assert first["prompt_tokens"] == done["prompt_tokens"]
    assert first["warmed_tokens"] == done["scorecard"]["warmed_tokens"] > 0
    assert all(set(frame) == {"type", "text"} for frame in others)
