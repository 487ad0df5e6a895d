"""Named prefix states against the real vLLM: created, forked, generated from with the stock
`openai` SDK (its base URL is the state's), expired, deleted, and kept per tenant."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread
from tests.conftest import Engine
from tests.engine.conftest import kv_events_of

pytestmark = pytest.mark.engine

MODEL = "SmolLM2-135M-Instruct"
KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
BLOCK = 32


def document(topic: str) -> str:
    """A few hundred tokens of its own per test, so no test finds another's blocks."""
    facts = " ".join(
        f"Item {i} of the {topic} list weighs {i * 7 % 23} kilograms." for i in range(24)
    )
    return f"Answer from this {topic} inventory only. {facts}"


@pytest.fixture(scope="module")
def app_url(engine: Engine, data_dir: Path) -> Iterator[str]:
    settings = Settings(
        vllm_url=engine.url,
        **kv_events_of(engine),
        data_dir=data_dir,
        enable_database=False,
        api_keys=KEYS,
        max_tokens=8,
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


def http(app_url: str, key: str = "key-a") -> httpx.Client:
    return httpx.Client(base_url=app_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def create(app_url: str, body: dict[str, Any], key: str = "key-a") -> dict[str, Any]:
    with http(app_url, key) as client:
        reply = client.post("/v1/states", json=body)
    assert reply.status_code == 201, reply.text
    state: dict[str, Any] = reply.json()
    return state


def sdk(app_url: str, state_id: str, key: str = "key-a") -> openai.OpenAI:
    """The stock SDK pointed at a state: `/completions` is the state's."""
    return openai.OpenAI(
        base_url=f"{app_url}/v1/states/{state_id}", api_key=key, max_retries=0, timeout=120
    )


def test_generating_from_a_state_hits_its_blocks(app_url: str) -> None:
    state = create(app_url, {"messages": [{"role": "system", "content": document("garden")}]})
    full = (state["prompt_tokens"] - 1) // BLOCK * BLOCK
    assert state["resident_tokens"] == full > 0
    chat = sdk(app_url, state["id"]).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What does item 3 weigh?"}]
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None
    assert chat.usage.prompt_tokens > state["prompt_tokens"]
    assert chat.usage.prompt_tokens_details is not None
    assert chat.usage.prompt_tokens_details.cached_tokens >= full
    completion = sdk(app_url, state["id"]).completions.create(
        model=MODEL, prompt=" Item 5 weighs", max_tokens=4
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens >= full


def test_a_streamed_chat_from_a_state_reports_its_cached_tokens(app_url: str) -> None:
    state = create(app_url, {"messages": [{"role": "system", "content": document("kitchen")}]})
    stream = sdk(app_url, state["id"]).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name one item."}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens >= state["resident_tokens"] > 0


def test_a_fork_warms_only_its_new_blocks(app_url: str) -> None:
    parent = create(app_url, {"prompt": document("workshop")})
    full = (parent["prompt_tokens"] - 1) // BLOCK * BLOCK
    with http(app_url) as client:
        reply = client.post(
            f"/v1/states/{parent['id']}/fork",
            json={"append": " " + " ".join(f"Note {i}: shelf {i} is blue." for i in range(12))},
        )
    assert reply.status_code == 201, reply.text
    fork = reply.json()
    assert fork["parent"] == parent["id"]
    assert fork["prompt_tokens"] > parent["prompt_tokens"] + BLOCK
    assert fork["cached_tokens"] >= full
    assert fork["resident_tokens"] == (fork["prompt_tokens"] - 1) // BLOCK * BLOCK


def test_the_same_seed_gives_the_same_text_and_another_seed_another(app_url: str) -> None:
    state = create(app_url, {"prompt": document("harbour") + " A short story about item 2:"})
    client = sdk(app_url, state["id"])

    def sample(seed: int) -> str:
        reply = client.completions.create(
            model=MODEL, prompt="", max_tokens=16, temperature=1.2, top_p=0.95, seed=seed
        )
        return reply.choices[0].text

    first = sample(11)
    assert first
    assert sample(11) == first
    assert sample(12) != first


def test_logprobs_come_back(app_url: str) -> None:
    state = create(app_url, {"messages": [{"role": "system", "content": document("office")}]})
    client = sdk(app_url, state["id"])
    completion = client.completions.create(
        model=MODEL, prompt="<|im_start|>user\nHi<|im_end|>\n", max_tokens=3, logprobs=2
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.token_logprobs is not None
    assert len(logprobs.token_logprobs) == 3
    assert all(lp is not None and lp <= 0 for lp in logprobs.token_logprobs)
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=3,
        logprobs=True,
        top_logprobs=2,
    )
    content = chat.choices[0].logprobs
    assert content is not None
    assert content.content is not None
    assert len(content.content) == 3
    assert "".join(item.token for item in content.content) == chat.choices[0].message.content
    assert all(1 <= len(item.top_logprobs) <= 3 for item in content.content)


def test_a_state_expires_and_can_be_deleted(app_url: str) -> None:
    kept = create(app_url, {"prompt": document("cellar")})
    short = create(app_url, {"prompt": document("attic"), "ttl_s": 1})
    assert short["expires_at"] - short["created_at"] == pytest.approx(1)
    with http(app_url) as client:
        deadline = time.monotonic() + 15
        while client.get(f"/v1/states/{short['id']}").status_code != 404:
            assert time.monotonic() < deadline, "the state outlived its TTL"
            time.sleep(0.2)
        assert client.get(f"/v1/states/{kept['id']}").status_code == 200
        listed = [state["id"] for state in client.get("/v1/states").json()["data"]]
        assert short["id"] not in listed
        assert kept["id"] in listed
        gone = client.post(f"/v1/states/{short['id']}/completions", json={"prompt": "x"})
        assert gone.status_code == 404
        assert client.delete(f"/v1/states/{kept['id']}").json()["deleted"] is True
        missing = client.get(f"/v1/states/{kept['id']}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "state_not_found"


def test_another_tenant_gets_404(app_url: str) -> None:
    state = create(app_url, {"prompt": document("vault")})
    with http(app_url, "key-b") as other, http(app_url) as own:
        never = other.get("/v1/states/st_never-made")
        for reply in (
            other.get(f"/v1/states/{state['id']}"),
            other.post(f"/v1/states/{state['id']}/completions", json={"prompt": "x"}),
            other.post(f"/v1/states/{state['id']}/chat/completions", json={"messages": []}),
            other.post(f"/v1/states/{state['id']}/fork", json={"append": "x"}),
            other.delete(f"/v1/states/{state['id']}"),
        ):
            assert reply.status_code == 404
            assert reply.json()["error"]["code"] == never.json()["error"]["code"]
            assert document("vault") not in reply.text
        assert state["id"] not in other.get("/v1/states").text
        assert own.get(f"/v1/states/{state['id']}").status_code == 200
