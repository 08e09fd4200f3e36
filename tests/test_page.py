"""The call-log page in a real browser: calls appear and change live, timelines expand, filters, XSS, the token."""

import colorsys
import json
import re
import time
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests

from conftest import CALL_LOG_TOKEN, ROOT, SEED_EVENTS, load_fixture
from simulator.client import Simulator
from support.browser import CHROMIUM_ARGS, chromium_path
from support.servers import run_server

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


def test_a_call_whose_events_stopped_longer_ago_than_call_limit_is_stale_not_in_progress(browser, tmp_path):
    """A leg still ringing when its events stopped: past CALL_LIMIT the call cannot be going on, so the page stops
    calling it in progress (it stayed so for ever); and with signatures off the page says so."""
    settings = {"CALL_LIMIT": "1", "CALL_LOG_TOKEN": CALL_LOG_TOKEN, "DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    with run_server(**settings) as url:
        post_event(url, status="ringing", uuid="leg-stale", conversation_uuid="CON-stale")
        time.sleep(1.5)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{url}/calls?token={CALL_LOG_TOKEN}")
        card = call_card(page, "CON-stale")
        expect(card.locator(".headline .badge")).to_have_text("stale: no event for longer than CALL_LIMIT")
        expect(card).to_have_attribute("data-outcome", "stale")
        expect(card.locator(".headline .badge.live")).to_have_count(0)
        note = page.locator("#unsigned")
        expect(note).to_be_visible()
        expect(note).to_contain_text("Set VONAGE_SIGNATURE_SECRET")
        context.close()


def test_at_least_twelve_calls_fit_on_a_1280x900_screen_with_their_legs_a_click_away(browser, tmp_path):
    """Computed layout, not a screenshot: the cards of 15 two-leg calls, each with its connect decision, as the
    browser lays them out; twelve or more end inside the first screen. A card's legs show once it is opened."""
    settings = {"CALL_LOG_TOKEN": CALL_LOG_TOKEN, "DATABASE_URL": f"sqlite:///{tmp_path / 'dense.db'}"}
    with run_server(**settings) as url:
        for index in range(15):
            conversation = f"CON-dense-{index:02d}"
            query = {"to": "447700900000", "from_user": "Alice", "conversation_uuid": conversation}
            assert requests.get(f"{url}/voice/answer", params=query, timeout=10).status_code == 200
            post_event(
                url,
                status="started",
                direction="inbound",
                uuid=f"app-{index}",
                conversation_uuid=conversation,
                **{"from": None, "to": "Alice"},
            )
            post_event(
                url,
                status="completed",
                uuid=f"phone-{index}",
                conversation_uuid=conversation,
                duration="42",
                price="0.00889",
            )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{url}/calls?token={CALL_LOG_TOKEN}")
        expect(page.locator("details.call")).to_have_count(15, timeout=WAIT_MS)
        bottoms = page.locator("details.call").evaluate_all(
            "cards => cards.map(card => card.getBoundingClientRect().bottom)"
        )
        assert sum(bottom <= 900 for bottom in bottoms) >= 12, bottoms
        card = call_card(page, "CON-dense-00")
        expect(card.locator(".leg").first).to_be_hidden()
        card.locator("summary").click()
        expect(card.locator(".leg")).to_have_count(2)
        expect(card.locator(".leg").first).to_be_visible()
        context.close()


def cookie_name(server) -> str:
    """The page's cookie on this server: named after its port, as two servers on one host keep two."""
    return f"call_log_token_{urlsplit(server).port}"


def test_token_moves_into_an_httponly_strict_cookie(page, server):
    assert "token=" not in page.url
    (cookie,) = [c for c in page.context.cookies() if c["name"] == cookie_name(server)]
    assert cookie["value"] == CALL_LOG_TOKEN and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"


CSP_WATCH = """document.addEventListener("securitypolicyviolation", function (event) {
  (window.cspViolations = window.cspViolations || []).push(event.violatedDirective + " " + event.blockedURI);
});"""


def test_the_link_leaves_a_port_named_strict_cookie_and_the_page_works_under_its_policy(browser, server):
    # An id with a slash, a space and a percent sign: its card and timeline work all the same.
    conversation = "CON-csp/0001 100%"
    post_event(server, status="started", uuid="leg-csp-1", conversation_uuid=conversation)
    context = browser.new_context()
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(CSP_WATCH)
    response = page.goto(f"{server}/calls?token={CALL_LOG_TOKEN}")
    assert response.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self';")
    assert "token=" not in page.url
    (cookie,) = context.cookies()
    assert cookie["name"] == cookie_name(server) and cookie["value"] == CALL_LOG_TOKEN
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["domain"] == "127.0.0.1" and cookie["secure"] is False  # host-only, and plain http here
    card = call_card(page, conversation)
    expect(card.locator(".leg .badge")).to_have_text("started", timeout=WAIT_MS)
    assert colour_name(card.locator(".leg .badge")) == "blue"  # calls.css is applied
    card.locator("summary").click()  # calls.js fetches the timeline, with the id encoded
    expect(card.locator(".timeline .event")).to_have_count(1, timeout=WAIT_MS)
    expect(card.locator(".timeline .event .leg-name")).to_have_text("outbound")
    assert api_call(server, quote(conversation, safe=""))["conversation_uuid"] == conversation
    assert page.evaluate("window.cspViolations || []") == []
    assert [text for text in console if "Content Security Policy" in text] == []
    context.close()


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


def test_an_app_users_own_leg_reads_as_the_user_calling(page, server):
    """Vonage names the app user in `to` on the user's own leg, with nothing in `from`: the page shows Alice as the
    caller (it read "— → Alice", the caller looking like the destination), and Vonage's Unknown as unknown."""
    conversation = "CON-parties-0001"
    post_event(
        server,
        status="started",
        direction="inbound",
        uuid="leg-app",
        conversation_uuid=conversation,
        **{"from": None, "to": "Alice"},
    )
    post_event(server, status="completed", uuid="leg-phone", conversation_uuid=conversation, **{"from": "Unknown"})
    card = call_card(page, conversation)
    expect(card.locator(".leg .parties")).to_have_count(2, timeout=WAIT_MS)
    texts = card.locator(".leg .parties").evaluate_all("parties => parties.map(p => p.textContent.trim())")
    assert sorted(texts) == ["Alice → —", "— → 447700900000"]


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
    payload = json.loads(events.nth(0).locator(".payload").text_content())
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
    result = Simulator(server).call("447700900000", "answered", duration=42)
    assert result.ok, result.problems
    card = call_card(page, result.conversation_uuid)
    expect(card.locator(".leg")).to_have_count(2, timeout=WAIT_MS)
    card.locator("summary").click()
    expect(card.locator(".timeline .event")).to_have_count(8, timeout=WAIT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "calls-page.png"), full_page=True)
    assert (ARTIFACTS / "calls-page.png").stat().st_size > 0


def api_call(server, conversation):
    headers = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}
    return requests.get(f"{server}/api/calls/{conversation}", headers=headers, timeout=10).json()


def opened(browser, url, **context_options):
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.goto(f"{url}/calls?token={CALL_LOG_TOKEN}")
    return page


def colour_name(element) -> str:
    """The colour family of an element's computed background, as people name it: "blue", "green", "amber",
    "red", "purple" or "grey"; what the page shows, whichever class or stylesheet rule paints it."""
    css = element.evaluate("element => getComputedStyle(element).backgroundColor")
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+", css)[:3])
    hue, _lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    if saturation < 0.15:
        return "grey"
    degrees = hue * 360
    bands = ((15, "red"), (70, "amber"), (170, "green"), (250, "blue"), (330, "purple"), (360, "red"))
    return next(name for limit, name in bands if degrees < limit)


@pytest.mark.parametrize(
    ("number", "outcome", "label", "colour"),
    [
        ("447700900101", "answered", "completed", "green"),
        ("447700900102", "busy", "busy", "amber"),
        ("447700900103", "failed", "failed", "red"),
        ("447700900104", "unanswered", "unanswered", "grey"),
        ("449098790000", "answered", "refused", "purple"),
    ],
)
def test_each_call_has_a_badge_coloured_by_its_outcome(page, server, number, outcome, label, colour):
    result = Simulator(server).call(number, outcome, duration=5)
    headline = call_card(page, result.conversation_uuid).locator(".headline .badge")
    expect(headline).to_have_text(label, timeout=WAIT_MS)
    assert colour_name(headline) == colour
    # The answer decision is told apart from the outcome: never a green "connected" on a busy call.
    decisions = call_card(page, result.conversation_uuid).locator(".answer .badge")
    assert "green" not in [colour_name(decision) for decision in decisions.all()]


def test_a_call_still_ringing_has_a_blue_in_progress_badge(page, server):
    post_event(server, status="answered", direction="inbound", uuid="leg-ring-in", conversation_uuid="CON-ringing")
    post_event(server, status="ringing", uuid="leg-ring-out", conversation_uuid="CON-ringing")
    card = call_card(page, "CON-ringing")
    expect(card.locator(".leg .badge")).to_have_text(["answered", "ringing"], timeout=WAIT_MS)
    headline = card.locator(".headline .badge")
    expect(headline).to_have_text("in progress")
    assert colour_name(headline) == "blue"
    assert [colour_name(badge) for badge in card.locator(".leg .badge").all()] == ["blue", "blue"]


def test_times_show_in_the_browsers_zone_with_how_long_ago(browser, server):
    post_event(server, status="started", uuid="leg-tz-1", conversation_uuid="CON-tz-0001")
    started = datetime.fromisoformat(api_call(server, "CON-tz-0001")["started_at"])
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    page = context.new_page()
    page.clock.set_fixed_time(started + timedelta(minutes=3, seconds=10))
    page.goto(f"{server}/calls?token={CALL_LOG_TOKEN}")
    moment = call_card(page, "CON-tz-0001").locator(".headline time")
    in_tokyo = started.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M:%S")
    expect(moment).to_contain_text(in_tokyo, timeout=WAIT_MS)
    expect(moment).to_contain_text("3 min ago")
    assert moment.get_attribute("datetime") == api_call(server, "CON-tz-0001")["started_at"]
    context.close()


def test_prices_are_labelled_in_euros_as_vonage_reports_them(page, server):
    post_event(
        server, status="completed", uuid="leg-eur-1", conversation_uuid="CON-eur", price="0.01291667", rate="0.01270000"
    )
    card = call_card(page, "CON-eur")
    expect(card.locator(".leg .price")).to_have_text("0.01291667 EUR", timeout=WAIT_MS)
    expect(card.locator(".headline .price")).to_have_text("0.01291667 EUR")
    assert card.locator(".leg .price").get_attribute("title") == "rate 0.01270000 EUR/min"


def test_the_summary_strip_covers_every_call_the_filter_matches(page, server):
    # A call the filter leaves out, however the module's other tests run.
    Simulator(server).call("447700900666", "answered", duration=90)
    answered = Simulator(server).call("447700900555", "answered", duration=30)
    # A page's worth of newer busy calls to the same number: the answered call is on the next page, not in view.
    for number in range(50):
        post_event(
            server,
            status="busy",
            uuid=f"leg-strip-{number}",
            conversation_uuid=f"CON-strip-{number}",
            to="447700900555",
        )
    page.fill("input[name=number]", "447700900555")
    page.press("input[name=number]", "Enter")
    expect(page.locator("[data-summary=calls]")).to_have_text("51", timeout=WAIT_MS)
    expect(page.locator("details.call")).to_have_count(50)
    expect(call_card(page, answered.conversation_uuid)).to_have_count(0)
    expect(page.locator("[data-summary=answered]")).to_have_text("2%")
    expect(page.locator(".summary")).to_contain_text("(1 of 51)")
    expect(page.locator("[data-summary=median]")).to_have_text("30 s")
    spend = sum(Decimal(leg["price"] or 0) for leg in api_call(server, answered.conversation_uuid)["legs"])
    expect(page.locator("[data-summary=spend]")).to_have_text(f"{spend.quantize(Decimal('0.0001'))} EUR")


def test_the_summary_strip_catches_up_as_soon_as_a_new_call_arrives(browser, server):
    post_event(server, status="ringing", uuid="leg-strip-old", conversation_uuid="CON-strip-old")
    context = browser.new_context()
    page = context.new_page()
    # The page's timers run only when the test says: the strip's own 15 s never pass here.
    page.clock.install()
    page.goto(f"{server}/calls?token={CALL_LOG_TOKEN}")
    before = int(page.locator("[data-summary=calls]").text_content())
    post_event(server, status="ringing", uuid="leg-strip-new", conversation_uuid="CON-strip-new")
    page.clock.run_for(1000)
    expect(call_card(page, "CON-strip-new")).to_be_visible(timeout=WAIT_MS)
    page.clock.run_for(1000)
    expect(page.locator("[data-summary=calls]")).to_have_text(str(before + 1), timeout=WAIT_MS)
    context.close()


def test_older_calls_are_a_page_away_and_the_refresh_keeps_to_that_page(browser, tmp_path):
    with run_server(DATABASE_URL=f"sqlite:///{tmp_path / 'many.db'}", CALL_LOG_TOKEN=CALL_LOG_TOKEN) as url:
        for number in range(55):
            post_event(url, status="ringing", uuid=f"leg-many-{number}", conversation_uuid=f"CON-many-{number:02d}")
        page = opened(browser, url)
        expect(page.locator("details.call")).to_have_count(50, timeout=WAIT_MS)
        page.click("a.older")
        expect(page.locator("details.call")).to_have_count(5, timeout=WAIT_MS)
        expect(call_card(page, "CON-many-00")).to_be_visible()
        # Live: a call on this older page changes, and the page stays the older page.
        post_event(url, status="busy", uuid="leg-many-0", conversation_uuid="CON-many-00")
        expect(call_card(page, "CON-many-00").locator(".leg .badge")).to_have_text("busy", timeout=WAIT_MS)
        expect(page.locator("details.call")).to_have_count(5)
        page.click("a.newest")
        expect(page.locator("details.call")).to_have_count(50, timeout=WAIT_MS)
        page.context.close()


def test_a_timeline_is_one_compact_row_per_event_with_payloads_folded(browser, server):
    for path in SEED_EVENTS:
        requests.post(f"{server}/voice/event", json=load_fixture(path), timeout=10).raise_for_status()
    conversation = load_fixture(SEED_EVENTS[0])["conversation_uuid"]
    page = opened(browser, server, viewport={"width": 1200, "height": 900})
    card = call_card(page, conversation)
    card.locator("summary").first.click()
    events = card.locator(".timeline .event")
    expect(events).to_have_count(5, timeout=WAIT_MS)
    expect(events.locator(".leg-name")).to_have_text(["inbound", "outbound", "outbound", "outbound", "inbound"])
    expect(events.nth(3)).to_contain_text("duration 5 s")
    expect(events.nth(3)).to_contain_text("price 0.00833333 EUR")
    for event in events.all():
        # One line each, the toggle included: no marker or "payload" link on a line of its own.
        assert event.bounding_box()["height"] < 30
    expect(events.locator(".payload").first).to_be_hidden()
    events.nth(0).locator(".event-row").click()
    expect(events.nth(0).locator(".payload")).to_be_visible()
    page.context.close()


def test_a_token_that_no_longer_works_stops_the_refresh_with_a_banner(page, server):
    banner = page.locator("#session-expired")
    expect(banner).to_be_hidden()
    # What a restart with a new CALL_LOG_TOKEN does to an open page: its cookie no longer matches.
    page.context.add_cookies([{"name": cookie_name(server), "value": "an-older-token-0123456789", "url": server}])
    expect(banner).to_be_visible(timeout=WAIT_MS)
    expect(banner).to_contain_text("open the new link printed at start-up")
    assert page.evaluate("document.body.classList.contains('expired')")


def held_until(page, held: list, count: int, seconds: float) -> float:
    """Lets the page run until `held` has `count` requests or `seconds` pass; returns the time it stopped."""
    deadline = time.monotonic() + seconds
    while len(held) < count and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    return time.monotonic()


def test_the_refresh_keeps_one_request_at_a_time_and_slows_down_for_a_slow_server(page):
    # The list's refreshes are held here, as a server taking its time over a big filtered log would hold them.
    held = []
    page.route("**/calls?*partial=list*", lambda route: held.append((time.monotonic(), route)))
    held_until(page, held, 1, 5)
    assert len(held) == 1
    page.wait_for_timeout(2000)
    # While one refresh is unanswered, the page asks for no other.
    assert len(held) == 1
    asked_at, first = held[0]
    first.continue_()
    answered = time.monotonic()  # the server answers a refresh in milliseconds
    took = answered - asked_at
    # The next refresh waits four times as long as that one took (about 2 s), not the usual second.
    held_until(page, held, 2, 4 * took + 5)
    assert len(held) == 2, "the refresh stopped after a slow answer"
    gap = held[1][0] - answered
    assert gap > 0.75 * 4 * took, f"asked again {gap:.1f} s after a {took:.1f} s answer"
    held[1][1].continue_()
