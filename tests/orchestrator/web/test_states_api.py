"""`/v1/states` against the fake vLLM, which simulates prefix caching per salt and records
every request: what a state, a fork and a generation from a state send, the budgets, the
tenants, and the keeper's re-warms."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from orchestrator.core.cache.resident import Eviction, ResidentBlocks
from orchestrator.core.engine.salt import routing_key
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.web.chat_format import chat_logprobs
from testkit.fake_vllm import FakeVLLM
from tests.fakes import wait_until
from tests.helpers import BLOCK, sse_data
from tests.sessions import App, Defaults, StartApp, salt

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
IDS = list(range(1, 100))  # 99 tokens: three full blocks usable
WARM_PRIORITY, FINAL_PRIORITY = 7, -2


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    return Defaults(
        settings={
            "api_keys": KEYS,
            "warm_priority": WARM_PRIORITY,
            "final_priority": FINAL_PRIORITY,
            "states_max_per_tenant": 3,
            "state_max_ttl_s": 600,
            "state_default_ttl_s": 60,
        }
    )


async def client(app: App, key: str = "key-a") -> httpx.AsyncClient:
    http = await app.http()
    http.headers["Authorization"] = f"Bearer {key}"
    return http


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    reply = await http.post("/v1/states", json=body)
    assert reply.status_code == 201, reply.text
    state: dict[str, Any] = reply.json()
    return state


async def test_a_state_is_warmed_block_aligned_under_the_tenant_salt(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    http = await client(await start_app())
    state = await create(http, prompt=IDS, store_text=False)
    assert state["prompt_tokens"] == 99
    assert state["resident_tokens"] == 3 * BLOCK
    assert state["cached_tokens"] == 0
    assert state["input"] is None
    (warmup,) = fake.warmups
    assert warmup.prompt == IDS[: 3 * BLOCK + 1]
    assert warmup.body["cache_salt"] == salt("tenant-a")
    assert warmup.body["priority"] == WARM_PRIORITY
    fetched = (await http.get(f"/v1/states/{state['id']}")).json()
    assert fetched["prompt_tokens"] == 99
    assert fetched["expires_at"] == state["expires_at"]
    await http.delete(f"/v1/states/{state['id']}")


async def test_a_fork_extends_its_parent_and_finds_its_blocks(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    http = await client(await start_app())
    parent = await create(http, prompt=IDS)
    reply = await http.post(
        f"/v1/states/{parent['id']}/fork", json={"append": list(range(200, 240))}
    )
    fork = reply.json()
    assert reply.status_code == 201
    assert fork["parent"] == parent["id"]
    assert fork["prompt_tokens"] == 139
    assert fork["cached_tokens"] == 3 * BLOCK  # the parent's blocks, found cached
    assert fake.warmups[-1].prompt == [*IDS, *range(200, 240)][: 4 * BLOCK + 1]
    for state in (parent, fork):
        await http.delete(f"/v1/states/{state['id']}")


async def test_a_completion_from_a_state_sends_the_state_then_the_suffix(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    http = await client(await start_app())
    state = await create(http, prompt=IDS)
    body = {"prompt": " and then", "seed": 5, "temperature": 0.7, "top_p": 0.9, "logprobs": 2}
    reply = await http.post(f"/v1/states/{state['id']}/completions", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-state-id"] == state["id"]
    assert reply.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 3 * BLOCK
    sent = fake.finals[-1].body
    assert sent["prompt"] == [*IDS, *renderer.encode(" and then")]
    assert (sent["seed"], sent["temperature"], sent["top_p"], sent["logprobs"]) == (5, 0.7, 0.9, 2)
    assert sent["cache_salt"] == salt("tenant-a")
    assert sent["priority"] == FINAL_PRIORITY
    await http.delete(f"/v1/states/{state['id']}")


async def test_a_chat_from_a_chat_state_opens_the_answer_after_its_turns(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    http = await client(await start_app())
    system = {"role": "system", "content": "You answer from the manual. " * 8}
    state = await create(http, messages=[system])
    assert state["kind"] == "chat"
    user = {"role": "user", "content": "hi"}
    body = {"messages": [user], "stream": True, "stream_options": {"include_usage": True}}
    reply = await http.post(f"/v1/states/{state['id']}/chat/completions", json=body)
    assert reply.status_code == 200
    expected = renderer.tokenizer.apply_chat_template(
        [system, user], tokenize=False, add_generation_prompt=True
    )
    assert fake.finals[-1].body["prompt"] == renderer.encode(expected)
    events = sse_data(reply)
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    text = "".join(c["delta"].get("content", "") for chunk in chunks for c in chunk["choices"])
    assert text == "".join(fake.reply)
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    await http.delete(f"/v1/states/{state['id']}")


async def test_bad_requests_are_refused_in_the_envelope(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    http = await client(await start_app())
    both = await http.post("/v1/states", json={"prompt": "x", "messages": []})
    too_long = await http.post("/v1/states", json={"prompt": "x", "ttl_s": 601})
    state = await create(http, prompt=IDS)
    url = f"/v1/states/{state['id']}"
    tools = await http.post(f"{url}/chat/completions", json={"messages": [], "tools": []})
    bad_role = await http.post(
        f"{url}/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]}
    )
    bad_prompt = await http.post(f"{url}/completions", json={"prompt": [1, "x"]})
    empty_chat = await http.post(f"{url}/chat/completions", json={"messages": []})
    for reply in (both, too_long, tools, bad_role, bad_prompt, empty_chat):
        assert reply.status_code == 400, reply.text
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    assert too_long.json()["error"]["param"] == "ttl_s"
    assert tools.json()["error"]["param"] == "tools"
    assert fake.finals == []
    await http.delete(url)


async def test_the_budget_of_states_per_tenant(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app()
    http, other = await client(app), await client(app, "key-b")
    made = [await create(http, prompt=[i, *IDS]) for i in range(3)]
    refused = await http.post("/v1/states", json={"prompt": IDS})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "state_budget_exceeded"
    assert (await other.post("/v1/states", json={"prompt": IDS})).status_code == 201
    await http.delete(f"/v1/states/{made[0]['id']}")
    assert (await http.post("/v1/states", json={"prompt": IDS})).status_code == 201
    for tenant in (http, other):
        for state in (await tenant.get("/v1/states")).json()["data"]:
            await tenant.delete(f"/v1/states/{state['id']}")


async def test_the_budget_of_tokens_counts_shared_blocks_once(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(states_max_tokens_per_tenant=2 * len(IDS))
    http = await client(app)
    parent = await create(http, prompt=IDS)
    fork = await http.post(f"/v1/states/{parent['id']}/fork", json={"append": list(range(60))})
    assert fork.status_code == 201  # 99 + 60 tokens held, not 99 + 159
    apart = await http.post("/v1/states", json={"prompt": [0, *IDS]})
    assert apart.status_code == 429


async def test_another_tenant_cannot_see_a_state(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app()
    http, other = await client(app), await client(app, "key-b")
    state = await create(http, prompt="a private text")
    never = await other.get("/v1/states/st_never-made")
    for reply in (
        await other.get(f"/v1/states/{state['id']}"),
        await other.delete(f"/v1/states/{state['id']}"),
        await other.post(f"/v1/states/{state['id']}/completions", json={}),
        await other.post("/v1/states", json={"prompt": "x", "parent": state["id"]}),
    ):
        assert reply.status_code == 404
        error, missing = reply.json()["error"], never.json()["error"]
        assert error == {
            **missing,
            "message": missing["message"].replace("st_never-made", state["id"]),
        }
    assert (await other.get("/v1/states")).json()["data"] == []
    assert fake.finals == []
    assert (await http.get(f"/v1/states/{state['id']}")).json()["input"] == {
        "prompt": "a private text"
    }
    await http.delete(f"/v1/states/{state['id']}")


async def test_text_needs_the_tokenizer_token_ids_do_not(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    http = await client(await start_app(load_tokenizer=False))
    refused = await http.post("/v1/states", json={"prompt": "text"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "no_tokenizer"
    assert (await http.post("/v1/states", json={"prompt": IDS})).status_code == 201


async def test_the_keeper_touches_live_states_again(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app(state_touch_interval_s=0.05)
    http = await client(app)
    state = await create(http, prompt=IDS)
    touched = lambda: sum(w.prompt == IDS[:97] for w in fake.warmups) >= 3  # noqa: E731
    await wait_until(touched, what="the keeper's touches")
    assert app.services.watched()  # vLLM is watched while a state is kept
    await http.delete(f"/v1/states/{state['id']}")
    assert not app.services.watched()


async def test_the_keeper_rewarms_after_vllm_recovers(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app(state_touch_interval_s=3600)
    http = await client(app)
    await create(http, prompt=IDS)
    await wait_until(lambda: len(fake.warmups) >= 1, what="the state's warm-up")
    before = len(fake.warmups)
    app.services.on_engine_recovered()
    await wait_until(lambda: len(fake.warmups) > before, what="the re-warm after recovery")
    assert fake.warmups[-1].prompt == IDS[:97]


async def test_the_keeper_rewarms_a_state_whose_chain_was_evicted(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(state_touch_interval_s=3600)
    http = await client(app)
    await create(http, prompt=IDS)
    await create(http, prompt=[500, *IDS])
    await wait_until(lambda: len(fake.warmups) >= 2, what="the states' warm-ups")
    before = len(fake.warmups)
    index, tenant_salt = ResidentBlocks(), salt("tenant-a")
    index.stored([b"1", b"2", b"3"], None, IDS[:96], BLOCK, [(tenant_salt,), None, None])
    eviction = Eviction()
    index.removed([b"2"], eviction)
    keeper = app.services.state_keeper
    assert keeper is not None
    keeper.on_eviction(eviction, index)
    await wait_until(lambda: len(fake.warmups) > before, what="the re-warm")
    assert [w.prompt for w in fake.warmups[before:]] == [IDS[:97]]  # not the other state


def test_completion_logprobs_in_the_chat_shape() -> None:
    converted = chat_logprobs(
        {
            "tokens": ["Hi", "!"],
            "token_logprobs": [-0.5, -0.1],
            "top_logprobs": [{"Hi": -0.5, "Hello": -1.5}, {"!": -0.1}],
        }
    )
    assert converted == {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.5,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
                    {"token": "Hello", "logprob": -1.5, "bytes": [72, 101, 108, 108, 111]},
                ],
            },
            {
                "token": "!",
                "logprob": -0.1,
                "bytes": [33],
                "top_logprobs": [{"token": "!", "logprob": -0.1, "bytes": [33]}],
            },
        ]
    }
    assert chat_logprobs(None) is None


async def test_a_states_warm_ups_keep_alives_and_generates_share_the_tenants_routing_key(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    """Behind a router a state's generate must land on the replica its warm-ups went to."""
    app = await start_app(fresh=True)
    http = await client(app)
    state = await create(http, prompt=IDS)
    stored = await app.services.states.get("tenant-a", state["id"], time.time())
    assert stored is not None
    assert app.services.state_keeper is not None
    await app.services.state_keeper.touch(stored)
    reply = await http.post(f"/v1/states/{state['id']}/completions", json={"prompt": [5]})
    assert reply.status_code == 200, reply.text
    key = routing_key(app.settings.server_secret, "tenant-a")
    assert len(fake.warmups) >= 2  # the state's warm-up and the keeper's
    assert {warmup.route for warmup in fake.warmups} == {key}
    assert fake.finals[-1].route == key
    await http.delete(f"/v1/states/{state['id']}")
