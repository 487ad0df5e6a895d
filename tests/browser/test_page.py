"""The page at `/` in a real browser (Debian's Chromium driven by Playwright) against a real
vLLM and the demo database: typing warms the cache, Enter answers, compare shows both TTFTs,
a phone-sized screen needs no horizontal scroll.

Needs the `playwright` package and a Chromium binary (`/usr/bin/chromium`, or
`PREFILL_CHROMIUM`); Playwright's own browser download is not used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    Page,
    WebSocketRoute,
    expect,
    sync_playwright,
)

pytestmark = [pytest.mark.engine, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough (about 45 tokens) that typing it crosses at least one KV block boundary.
QUESTION = (
    "Which customers in the gold loyalty tier placed more than three orders in the web shop, "
    "and what is the total amount each of them has spent on all of those orders, "
    "sorted from the highest to the lowest total?"
)
TTFT = re.compile(r"^\d[\d.,]* m?s$")
ENGINE_TIMEOUT_MS = 180_000


def chromium_path() -> str:
    path = os.environ.get("PREFILL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(f"no Chromium at {path}: run `make setup-browser` (or set PREFILL_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def app_url(sql_app_url: str) -> str:
    return sql_app_url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as p:
        # launch() gives Chromium a fresh, temporary user-data dir of its own.
        browser = p.chromium.launch(
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            headless=True,
            downloads_path=str(tmp_path_factory.mktemp("downloads")),
        )
        try:
            yield browser
        finally:
            browser.close()


class Console:
    """Console messages and uncaught page errors of one page."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("console", lambda message: self.messages.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))

    def problems(self) -> list[str]:
        return [m for m in self.messages if m.startswith(("error", "warning", "pageerror"))]


def open_page(browser: Browser, url: str, **context_options: object) -> tuple[Page, Console]:
    context = browser.new_context(**context_options)  # type: ignore[arg-type]
    page = context.new_page()
    console = Console(page)
    page.goto(url)
    return page, console


def wait_ready(page: Page, database: str | None = None) -> None:
    selector = '[data-testid="status"][data-state="ready"]'
    if database is not None:
        selector += f'[data-context="{database}"]'
    expect(page.locator(selector)).to_be_visible(timeout=ENGINE_TIMEOUT_MS)


def no_horizontal_scroll(page: Page) -> bool:
    return bool(
        page.evaluate(
            "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def test_typing_warms_and_enter_answers(browser: Browser, app_url: str) -> None:
    page, console = open_page(browser, app_url, viewport={"width": 1280, "height": 900})
    wait_ready(page)
    expect(page.locator("#context option[value=demo]")).to_be_attached()
    page.select_option("#context", "demo")
    wait_ready(page, "demo")
    expect(page.locator("#engine")).to_contain_text("block")
    served = page.request.get(f"{app_url}/health").json()["vllm"]["model"]
    panel = page.get_by_test_id("status-panel")
    expect(panel.get_by_test_id("status-model")).to_have_text(served, timeout=ENGINE_TIMEOUT_MS)
    expect(panel).to_have_attribute("data-state", "ok")
    expect(panel.get_by_test_id("status-kv")).to_have_text(re.compile(r"^\d+\.\d %$"))
    expect(panel.get_by_test_id("status-events")).not_to_have_text("—")

    page.locator("#question").click()
    page.keyboard.type(QUESTION, delay=60)
    marks = page.get_by_test_id("warm-mark")
    expect(marks.first).to_be_visible(timeout=ENGINE_TIMEOUT_MS)
    keystroke_marks = page.locator('[data-testid="warm-mark"]:not([data-seq="0"])')
    expect(keystroke_marks.first).to_be_visible(timeout=ENGINE_TIMEOUT_MS)
    expect(page.locator("#mirror-cached")).to_have_text(re.compile(r"\S"))
    expect(page.locator("#question")).to_have_value(QUESTION)

    page.keyboard.press("Enter")
    expect(page.get_by_test_id("ttft")).to_have_text(TTFT, timeout=ENGINE_TIMEOUT_MS)
    expect(page.get_by_test_id("answer")).to_have_text(re.compile(r"\S"))
    expect(page.get_by_test_id("cached")).to_have_text(re.compile(r"^\d[\d,]* / \d[\d,]*$"))
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "ready")
    expect(page.locator("#question")).to_have_value(QUESTION)  # Enter did not add a newline
    outcome = page.locator('[data-testid="result-table"]:visible, [data-testid="refused"]:visible')
    expect(outcome.first).to_be_visible()
    if not page.get_by_test_id("refused").is_visible():
        expect(page.get_by_test_id("sql")).to_have_text(re.compile(r"(?i)\b(select|with)\b"))
        expect(page.locator('[data-testid="result-table"] th').first).to_be_visible()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
    assert console.problems() == [], console.messages
    page.context.close()


def test_compare_shows_both_ttfts(browser: Browser, app_url: str) -> None:
    page, console = open_page(browser, app_url, viewport={"width": 1280, "height": 900})
    wait_ready(page, "demo")
    expect(page.get_by_test_id("compare-panel")).to_be_hidden()
    page.get_by_role("switch", name="Compare: warm-ups off vs on").check()
    expect(page.get_by_test_id("compare-panel")).to_be_visible()

    page.locator("#question").click()
    page.keyboard.type("How many stores are there in each country?", delay=40)
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_test_id("ttft-cold")).to_have_text(TTFT, timeout=ENGINE_TIMEOUT_MS)
    expect(page.get_by_test_id("ttft-warm")).to_have_text(TTFT, timeout=ENGINE_TIMEOUT_MS)
    expect(page.get_by_test_id("ttft")).to_have_text(TTFT)
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "ready")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
    assert console.problems() == [], console.messages
    page.context.close()


def test_phone_viewport_has_no_horizontal_scroll(browser: Browser, app_url: str) -> None:
    page, console = open_page(
        browser,
        app_url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    wait_ready(page, "demo")
    page.get_by_role("switch", name="Compare: warm-ups off vs on").check()
    assert no_horizontal_scroll(page)

    page.locator("#question").click()
    page.keyboard.type("List every customer with their email, birth date and loyalty tier.")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("ttft")).to_have_text(TTFT, timeout=ENGINE_TIMEOUT_MS)
    expect(page.get_by_test_id("ttft-warm")).to_have_text(TTFT, timeout=ENGINE_TIMEOUT_MS)
    assert no_horizontal_scroll(page)
    submit = page.get_by_role("button", name="Submit").bounding_box()
    assert submit is not None
    assert submit["height"] >= 44

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    assert console.problems() == [], console.messages
    page.context.close()


def test_error_banner_and_reconnect(browser: Browser, app_url: str) -> None:
    context = browser.new_context(viewport={"width": 1024, "height": 800})
    page = context.new_page()
    console = Console(page)
    routes: list[WebSocketRoute] = []

    def through(route: WebSocketRoute) -> None:  # passes frames on; lets the test cut in
        route.connect_to_server()
        routes.append(route)

    page.route_web_socket(re.compile(r"/ws/session$"), through)
    page.goto(app_url)
    wait_ready(page, "demo")
    page.locator("#question").click()
    page.keyboard.type("How many stores are there?")

    error = {"type": "error", "code": "test_error", "message": "injected by the test"}
    routes[-1].send(json.dumps(error))
    banner = page.get_by_test_id("error")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("test_error")
    expect(banner).to_contain_text("injected by the test")
    page.get_by_role("button", name="Dismiss the error").click()
    expect(banner).to_be_hidden()

    page.evaluate(
        """() => {
            window.seenStates = [];
            const status = document.querySelector('[data-testid="status"]');
            new MutationObserver(() => window.seenStates.push(status.dataset.state))
                .observe(status, {attributes: true, attributeFilter: ["data-state"]});
        }"""
    )
    routes[-1].close(code=1011, reason="dropped by the test")
    page.wait_for_function(
        "() => window.seenStates.includes('reconnecting') && window.seenStates.at(-1) === 'ready'",
        timeout=ENGINE_TIMEOUT_MS,
    )
    wait_ready(page, "demo")
    assert len(routes) == 2
    expect(page.get_by_test_id("status")).to_have_text("Ready")
    expect(page.get_by_test_id("warm-mark").first).to_be_visible(timeout=ENGINE_TIMEOUT_MS)
    expect(page.locator("#question")).to_have_value("How many stores are there?")
    assert console.problems() == [], console.messages
    context.close()


def start_frames(browser: Browser, url: str) -> list[dict[str, object]]:
    """The `start` frames the page sends when opened at `url`."""
    context = browser.new_context()
    page = context.new_page()
    starts: list[dict[str, object]] = []

    def record(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def forward(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "start":
                starts.append(frame)
            server.send(message)

        route.on_message(forward)

    page.route_web_socket(re.compile(r"/ws/session$"), record)
    page.goto(url)
    wait_ready(page)
    context.close()
    return starts


def test_visitors_share_the_tenant_cache_unless_they_ask_for_their_own(
    browser: Browser, app_url: str
) -> None:
    shared = start_frames(browser, app_url)
    assert shared
    assert all("cache_namespace" not in frame for frame in shared)  # the tenant's cache
    own = start_frames(browser, f"{app_url}/?cache=visitor")
    namespaces = {frame.get("cache_namespace") for frame in own}
    assert len(namespaces) == 1
    assert None not in namespaces  # one namespace of this visitor's own, kept across restarts


def test_a_system_prompt_saved_as_a_state_is_offered_as_a_context(
    browser: Browser, app_url: str
) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    console = Console(page)
    starts: list[dict[str, object]] = []

    def sent(payload: str | bytes) -> None:
        frame = json.loads(payload)
        if frame.get("type") == "start":
            starts.append(frame)

    page.on("websocket", lambda ws: ws.on("framesent", sent))  # before the page opens its socket
    page.goto(app_url)
    wait_ready(page, "demo")
    page.select_option("#context", "*chat")
    wait_ready(page, "*chat")
    system = "You answer from this notice only. " + "The museum opens at ten, closes at six. " * 12
    page.fill("#system", system)
    posted = lambda r: r.url.endswith("/v1/states") and r.request.method == "POST"  # noqa: E731
    with page.expect_response(posted, timeout=ENGINE_TIMEOUT_MS) as saved:
        page.get_by_test_id("save-state").click()
    assert saved.value.status == 201
    state = saved.value.json()
    assert state["input"] == {"messages": [{"role": "system", "content": system}]}
    wait_ready(page, f"state:{state['id']}")
    expect(page.locator("#context")).to_have_value(f"state:{state['id']}")
    expect(page.locator("#context-note")).to_contain_text("saved state")
    assert starts[-1]["context"] == {"system": system}  # the session's context is the state's

    page.locator("#question").click()
    page.keyboard.type("When does the museum open?", delay=40)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("ttft")).to_have_text(TTFT, timeout=ENGINE_TIMEOUT_MS)
    # At the first token the tile says what the session warmed ("≈ ..."); vLLM's count at done.
    vllm_count = re.compile(r"^\d[\d,]* / \d[\d,]*$")
    expect(page.get_by_test_id("cached")).to_have_text(vllm_count, timeout=ENGINE_TIMEOUT_MS)
    cached = page.get_by_test_id("cached").inner_text().replace(",", "").split(" / ")[0]
    assert int(cached) >= state["resident_tokens"] > 0

    other, _ = open_page(browser, app_url)
    wait_ready(other)
    expect(other.locator(f'#context option[value="state:{state["id"]}"]')).to_be_attached()
    other.context.close()
    assert page.request.delete(f"{app_url}/v1/states/{state['id']}").ok
    assert console.problems() == [], console.messages
    page.context.close()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_the_page_works_under_both_loopback_names(
    browser: Browser, app_url: str, name: str
) -> None:
    """The Host allow-list and the Origin check let the page in under either loopback name:
    the session opens (ready) and `/status` answers the panel."""
    url = app_url.replace("127.0.0.1", name)
    page, console = open_page(browser, url)
    wait_ready(page)
    assert page.request.get(f"{url}/health").json()["status"] in ("ok", "degraded")
    expect(page.get_by_test_id("status-panel")).to_have_attribute(
        "data-state", "ok", timeout=ENGINE_TIMEOUT_MS
    )
    assert not console.problems()
    page.context.close()
