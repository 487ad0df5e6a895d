"""HTTP bodies the hostile-input benchmark (`python -m eval hostile`) found answered with 500:
each is a 400 in the error envelope now, and the service goes on."""

from __future__ import annotations

import pytest

from eval.fake_vllm import FakeVLLM
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
