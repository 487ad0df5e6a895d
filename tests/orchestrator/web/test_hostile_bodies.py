"""HTTP bodies the hostile-input benchmark (`python -m eval hostile`) found answered with 500:
each is a 400 in the error envelope now, and the service goes on."""

from __future__ import annotations

import pytest

from testkit.fake_vllm import FakeVLLM
from tests.sessions import StartApp


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
async def test_nan_or_infinity_in_a_relayed_body_is_400(
    start_app: StartApp, fake: FakeVLLM, path: str
) -> None:
    http = await (await start_app()).http()
    for number in (b"NaN", b"Infinity", b"-Infinity"):
        reply = await http.post(path, content=b'{"prompt": "x", "temperature": ' + number + b"}")
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "invalid_request"
    assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize("ids", [[-1, 2, 3], [2**40, 1], [1, 2**31]])
@pytest.mark.parametrize("path", ["/v1/warm", "/v1/states"])
async def test_token_ids_out_of_range_are_400(
    start_app: StartApp, fake: FakeVLLM, path: str, ids: list[int]
) -> None:
    http = await (await start_app()).http()
    reply = await http.post(path, json={"prompt": ids * 40})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_request"
    assert (await http.get("/health")).status_code == 200


async def test_a_body_nested_too_deeply_to_parse_is_400_in_the_envelope(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    http = await (await start_app()).http()
    deep = b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for path in ("/v1/chat/completions", "/v1/warm", "/v1/states"):
        reply = await http.post(path, content=deep, headers={"content-type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "invalid_request"
    unknown = await http.get("/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
