"""The page fills the TTFT tile at the answer's first token, not at its end: against a fake vLLM
that streams slowly, so that the answer is still streaming when the first token shows.

Needs the `playwright` package and a Chromium binary, as `test_page.py`; no engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from orchestrator.web.app import create_app
from testkit.fake_vllm import FakeVLLM
from testkit.serving import serve_in_thread
from tests.browser.test_page import TTFT, browser, open_page, wait_ready
from tests.helpers import settings_against

__all__ = ["browser"]  # the Chromium fixture, shared with test_page.py
pytestmark = pytest.mark.browser

TOKEN_DELAY_S = 0.4  # between streamed tokens: the answer takes a few seconds after its first
WITHIN_MS = 30_000

# Records, at the moment the TTFT tile is first filled, what the other tiles and the status say.
WATCH_TTFT = """() => {
    const tile = (id) => document.querySelector(`[data-testid="${id}"]`);
    window.atFirstToken = null;
    new MutationObserver((_, observer) => {
        if (tile("ttft").textContent === "—") return;
        window.atFirstToken = {
            ttft: tile("ttft").textContent,
            cached: tile("cached").textContent,
            total: tile("total").textContent,
            state: tile("status").dataset.state,
        };
        observer.disconnect();
    }).observe(tile("ttft"), {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def slow_app_url(tokenizer_dir: Path) -> Iterator[str]:
    """A chat-only orchestrator in front of a fake vLLM that streams slowly."""
    fake = FakeVLLM(token_delay_s=TOKEN_DELAY_S)
    with serve_in_thread(fake) as vllm_url:
        settings = settings_against(vllm_url, tokenizer_dir, "first-token-secret")
        with serve_in_thread(create_app(settings)) as url:
            yield url


def test_the_ttft_tile_is_filled_at_the_first_token_before_done(
    browser: Browser, slow_app_url: str
) -> None:
    page, console = open_page(browser, slow_app_url, viewport={"width": 1280, "height": 900})
    wait_ready(page, "*chat")
    page.evaluate(WATCH_TTFT)
    page.locator("#question").click()
    page.keyboard.type("How many customers are in the gold tier?")
    page.keyboard.press("Enter")

    page.wait_for_function("() => window.atFirstToken !== null", timeout=WITHIN_MS)
    seen = page.evaluate("() => window.atFirstToken")
    assert TTFT.match(seen["ttft"]), seen
    assert re.fullmatch(r"≈ \d[\d,]* / \d[\d,]*", seen["cached"]), seen  # believed, then vLLM's
    assert seen["total"] == "—", seen  # the answer was still streaming
    assert seen["state"] == "generating", seen

    expect(page.get_by_test_id("total")).to_have_text(TTFT, timeout=WITHIN_MS)
    expect(page.get_by_test_id("cached")).to_have_text(re.compile(r"^\d[\d,]* / \d[\d,]*$"))
    expect(page.get_by_test_id("ttft")).to_have_text(seen["ttft"])  # done says the same TTFT
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "ready")
    assert console.problems() == [], console.messages
    page.context.close()
