"""Several sessions typing at once on the real vLLM: warm-ups go out in pieces through the one
scheduler, every final finds its own session's landed pieces cached, and nothing is left in
flight once the sessions have closed."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.engine.test_session_engine import long_question, type_and_submit

pytestmark = pytest.mark.engine
TYPISTS = 3


async def test_typists_at_once_each_hit_their_own_landed_pieces(app_url: str) -> None:
    texts = [long_question(120 + 40 * i) for i in range(TYPISTS)]
    sessions = await asyncio.gather(
        *(type_and_submit(app_url, text, key_interval_s=0.01) for text in texts)
    )
    for frames in sessions:
        errors = [frame for frame in frames if frame["type"] == "error"]
        assert not errors, errors
        done = frames[-1]
        assert done["type"] == "done"
        warms = [frame for frame in frames if frame["type"] == "warm"]
        assert warms, "no piece landed before submit"
        assert done["warm_pieces"]["landed"] == len(warms)
        assert done["warm_pieces"]["sent"] >= len(warms)
        # The final hits at least what its session's landed pieces left cached.
        assert done["cached_tokens"] >= max(frame["cached_tokens"] for frame in warms) > 0

    async with httpx.AsyncClient(base_url=app_url) as http:
        deadline = time.monotonic() + 30
        while True:
            warmups = (await http.get("/status")).json()["warmups"]
            idle = (warmups["in_flight"], warmups["pieces_in_flight"], warmups["queued"])
            if idle == (0, 0, 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert idle == (0, 0, 0), warmups
    assert warmups["finals_before_first_token"] == 0
