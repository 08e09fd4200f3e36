"""The call-log page in a real browser: calls appear and change live, timelines expand, filters, XSS, the token."""

import json
import time

import pytest
import requests

from browser import CHROMIUM_ARGS, chromium_path
from conftest import CALL_LOG_TOKEN, ROOT
from test_serve import run_server

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    database = tmp_path_factory.mktemp("page") / "calls.db"
    with run_server(DATABASE_URL=f"sqlite:///{database}", CALL_LOG_TOKEN=CALL_LOG_TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    page.goto(f"{server}/calls?token={CALL_LOG_TOKEN}")
    yield page
    context.close()


def post_event(server, **fields):
    payload = {
        "direction": "outbound",
        "from": "Alice",
        "to": "447700900000",
        "timestamp": f"2026-11-24T10:00:{time.time() % 60:06.3f}Z",
        **fields,
    }
    response = requests.post(f"{server}/voice/event", json=payload, timeout=10)
    assert response.status_code == 204


def call_card(page, conversation):
    return page.locator(f'details.call[data-conversation="{conversation}"]')


def test_empty_log_says_how_to_make_a_first_call(browser, tmp_path):
    with run_server(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}", CALL_LOG_TOKEN=CALL_LOG_TOKEN) as url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/calls?token={CALL_LOG_TOKEN}")
        expect(page.locator(".empty")).to_contain_text("flask simulate 447700900000")
        context.close()


def test_token_moves_into_an_httponly_strict_cookie(page):
    assert "token=" not in page.url
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "call_log_token"]
    assert cookie["value"] == CALL_LOG_TOKEN and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"


def test_no_token_gets_the_401_page(browser, server):
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(f"{server}/calls")
    assert response.status == 401
    expect(page.locator("h1")).to_have_text("The call log needs its token")
    context.close()


def test_a_call_appears_and_changes_status_without_reload(page, server):
    conversation = "CON-live-0001"
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    post_event(server, status="ringing", uuid="leg-live-1", conversation_uuid=conversation)
    card = call_card(page, conversation)
    expect(card.locator(".leg .badge")).to_have_text("ringing", timeout=WAIT_MS)
    expect(card.locator(".headline .badge.live")).to_have_text("in progress")
    post_event(
        server,
        status="completed",
        uuid="leg-live-1",
        conversation_uuid=conversation,
        duration="61",
        price="0.01291667",
        rate="0.01270000",
    )
    expect(card.locator(".leg .badge")).to_have_text("completed", timeout=WAIT_MS)
    expect(card.locator(".headline .badge.live")).to_have_count(0)
    expect(card.locator(".leg .duration")).to_have_text("61 s")
    assert navigations == []


def test_a_call_expands_to_its_ordered_timeline_with_raw_payloads(page, server):
    conversation = "CON-timeline-0001"
    for second, status in enumerate(["started", "ringing", "answered"]):
        post_event(
            server,
            status=status,
            uuid="leg-tl-1",
            conversation_uuid=conversation,
            timestamp=f"2026-11-24T09:00:0{second}.000Z",
        )
    card = call_card(page, conversation)
    expect(card).to_be_visible(timeout=WAIT_MS)
    card.locator("summary").click()
    events = card.locator(".timeline .event")
    expect(events).to_have_count(3, timeout=WAIT_MS)
    expect(events.locator(".badge")).to_have_text(["started", "ringing", "answered"])
    payload = json.loads(events.nth(0).locator(".payload").inner_text())
    assert payload["status"] == "started" and payload["uuid"] == "leg-tl-1"
    # It stays open, and keeps up, while the list refreshes.
    post_event(
        server,
        status="completed",
        uuid="leg-tl-1",
        conversation_uuid=conversation,
        timestamp="2026-11-24T09:00:09.000Z",
    )
    expect(events).to_have_count(4, timeout=WAIT_MS)
    assert card.get_attribute("open") is not None


def test_filters_by_status_and_number(page, server):
    post_event(
        server, status="busy", uuid="leg-busy-1", conversation_uuid="CON-filter-busy", to="447700900777", detail="busy"
    )
    post_event(server, status="completed", uuid="leg-done-1", conversation_uuid="CON-filter-done", to="447700900888")
    expect(call_card(page, "CON-filter-done")).to_be_visible(timeout=WAIT_MS)
    page.select_option("select[name=status]", "busy")
    expect(call_card(page, "CON-filter-done")).to_have_count(0, timeout=WAIT_MS)
    expect(call_card(page, "CON-filter-busy")).to_be_visible()
    page.select_option("select[name=status]", "")
    page.fill("input[name=number]", "+44 7700 900888")
    page.press("input[name=number]", "Enter")
    expect(call_card(page, "CON-filter-busy")).to_have_count(0, timeout=WAIT_MS)
    expect(call_card(page, "CON-filter-done")).to_be_visible()
    assert "number=" in page.url


def test_payload_values_are_rendered_as_text(page, server):
    attack = "<script>alert(1)</script>"
    conversation = "CON-xss-0001"
    post_event(
        server,
        status="started",
        uuid="leg-xss-1",
        conversation_uuid=conversation,
        to=attack,
        **{"from": '<img src=x onerror="alert(2)">'},
    )
    card = call_card(page, conversation)
    expect(card.locator(".leg .to")).to_have_text(attack, timeout=WAIT_MS)
    card.locator("summary").click()
    expect(card.locator(".timeline .payload")).to_contain_text(attack, timeout=WAIT_MS)
    assert card.locator("script, img").count() == 0
    assert page.dialogs == []


def test_screenshot_of_a_simulated_call(page, server):
    from simulate import Simulator

    result = Simulator(server).call("447700900000", "answered", duration=42)
    assert result.ok, result.problems
    card = call_card(page, result.conversation_uuid)
    expect(card.locator(".leg")).to_have_count(2, timeout=WAIT_MS)
    card.locator("summary").click()
    expect(card.locator(".timeline .event")).to_have_count(8, timeout=WAIT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "calls-page.png"), full_page=True)
    assert (ARTIFACTS / "calls-page.png").stat().st_size > 0
