"""The call log page's actions in a real browser (Chromium), on serve.py with CALL_CONTROL=on, against a stand-in of
the Voice API: each button and form reaches the stand-in as Vonage expects, and a page of another origin cannot make
the server act, even in a browser that holds the call log's cookie."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support import keys
from support.browser import CHROMIUM_ARGS, chromium_path
from support.live_calls import APPLICATION_ID, TOKEN, call, call_control_server, start_call
from support.production import wait_until
from support.voice_standin import VoiceStandIn

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def home(certificate):
    region = VoiceStandIn(certificate, APPLICATION_ID, keys.rsa_key().public_key())
    yield region
    region.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, certificate, home):
    with call_control_server(tmp_path_factory.mktemp("page-actions"), certificate, [home]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def live(server, home):
    leg, conversation = start_call(server, home.url)
    home.hold(leg)
    return leg, conversation


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.dialogs = []

    def answer(dialog):
        opened.dialogs.append(dialog.message)
        dialog.accept() if opened.accept_dialogs else dialog.dismiss()

    opened.accept_dialogs = True
    opened.on("dialog", answer)
    opened.goto(f"{server}/calls?token={TOKEN}")
    yield opened
    context.close()


def open_leg(page, leg, conversation):
    """The leg's action panel, once its call is on the page and opened."""
    card = page.locator(f'details.call[data-conversation="{conversation}"]')
    expect(card).to_have_count(1, timeout=WAIT_MS)
    card.locator("summary").click()
    panel = card.locator(f'.actions[data-leg="{leg}"]')
    expect(panel).to_be_visible(timeout=WAIT_MS)
    return card, panel


@pytest.mark.parametrize(
    ("button", "body", "asks"),
    [
        ("Hang up", {"action": "hangup"}, "Hang up this leg?"),
        ("Mute", {"action": "mute"}, None),
        ("Unmute", {"action": "unmute"}, None),
    ],
)
def test_each_button_reaches_vonage_and_its_result_shows_on_the_call(page, server, home, live, button, body, asks):
    leg, conversation = live
    card, panel = open_leg(page, leg, conversation)
    before = len(home.requests())
    panel.get_by_role("button", name=button, exact=True).click()
    received = home.wait_for(before + 1)[before]
    assert (received.method, received.path, received.body) == ("PUT", f"/v1/calls/{leg}", body)
    assert received.token_verified
    assert page.dialogs == ([asks] if asks else [])
    expect(panel.locator(".action-result")).to_have_text(f"{body['action']}: Vonage accepted it (204)")
    done = card.locator(".action-done")
    expect(done).to_contain_text("Vonage accepted it (204)", timeout=WAIT_MS)
    expect(done.locator(".badge")).to_have_text(body["action"])


def test_transfer_sends_the_destination_typed_after_confirming(page, server, home, live):
    leg, conversation = live
    _, panel = open_leg(page, leg, conversation)
    before = len(home.requests())
    panel.get_by_label("Transfer to").fill("Bob")
    panel.get_by_role("button", name="Transfer").click()
    received = home.wait_for(before + 1)[before]
    assert received.body["action"] == "transfer"
    assert received.body["destination"]["ncco"][-1]["endpoint"] == [{"type": "app", "user": "Bob"}]
    assert page.dialogs == ["Transfer this leg?"]


def test_a_refused_transfer_shows_the_reason_and_sends_nothing(page, server, home, live):
    leg, conversation = live
    _, panel = open_leg(page, leg, conversation)
    before = len(home.requests())
    panel.get_by_label("Transfer to").fill("449098790000")
    panel.get_by_role("button", name="Transfer").click()
    expect(panel.locator(".action-result")).to_contain_text("PREMIUM_RATE number", timeout=WAIT_MS)
    assert len(home.requests()) == before


def test_say_speaks_the_text_typed(page, server, home, live):
    leg, conversation = live
    _, panel = open_leg(page, leg, conversation)
    before = len(home.requests())
    panel.get_by_label("Say").fill("Your call is being transferred")
    panel.get_by_role("button", name="Say").click()
    received = home.wait_for(before + 1)[before]
    assert (received.method, received.path) == ("PUT", f"/v1/calls/{leg}/talk")
    assert received.body == {"text": "Your call is being transferred", "language": "en-US"}


def test_a_hang_up_not_confirmed_sends_nothing(page, server, home, live):
    leg, conversation = live
    page.accept_dialogs = False
    _, panel = open_leg(page, leg, conversation)
    before = len(home.requests())
    panel.get_by_role("button", name="Hang up").click()
    assert page.dialogs == ["Hang up this leg?"]
    # The next action goes out, so the one not confirmed would have been before it.
    panel.get_by_role("button", name="Mute", exact=True).click()
    received = home.wait_for(before + 1)
    assert [request.body for request in received[before:]] == [{"action": "mute"}]


def test_throttling_shows_on_the_call_as_throttled_retrying(page, server, home, live):
    leg, conversation = live
    card, panel = open_leg(page, leg, conversation)
    home.throttle(1)
    panel.get_by_role("button", name="Mute", exact=True).click()
    expect(card.locator('.action-done[data-outcome="throttled"]')).to_contain_text(
        "throttled, retrying", timeout=WAIT_MS
    )
    expect(panel.locator(".action-result")).to_have_text("mute: Vonage accepted it (204)", timeout=WAIT_MS)


ATTACK = """<!doctype html><title>prize</title><script>
var server = %r, leg = %r, tried = [];
function note(what) { tried.push(what); if (tried.length === 3) { document.title = "done " + tried.join(","); } }
fetch(server + "/api/calls/" + leg + "/actions", {method: "POST", mode: "no-cors", credentials: "include",
  headers: {"Content-Type": "text/plain"}, body: '{"action": "hangup"}'}).then(function () { note("posted"); },
  function () { note("post failed"); });
fetch(server + "/api/calls/" + leg + "/actions", {method: "POST", credentials: "include",
  headers: {"Content-Type": "application/json"}, body: '{"action": "hangup"}'}).then(function () { note("cors posted"); },
  function () { note("cors refused"); });
fetch(server + "/calls", {credentials: "include"}).then(function (r) { return r.text(); })
  .then(function (text) { note(text.indexOf("call-control-token") >= 0 ? "token read" : "page read"); },
        function () { note("token unread"); });
</script>"""


class _Attacker:
    """A page of another origin (another port of the same host: the same site, which a Strict cookie goes to)."""

    def __init__(self, html: str):
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_page_of_another_origin_cannot_make_the_server_act(page, server, home, live):
    leg, conversation = live
    open_leg(page, leg, conversation)  # this browser holds the call log's cookie, and has the page open
    before = len(home.requests())
    attacker = _Attacker(ATTACK % (server, leg))
    try:
        other = page.context.new_page()
        other.goto(attacker.url)
        wait_until(lambda: other.title().startswith("done"), 15, "the other origin's page did not finish")
        tried = other.title().removeprefix("done ").split(",")
    finally:
        attacker.close()
    assert sorted(tried) == ["cors refused", "posted", "token unread"]
    # The request the browser did send (no-cors, with the cookie) was refused for its origin.
    refused = f"refused a call action from another site's page (Origin: {attacker.url.rstrip('/')})"
    wait_until(lambda: refused in server.log.read_text(), 10, "the server did not log the refusal")
    assert len(home.requests()) == before
    assert call(server, conversation)["actions"] == []
    assert call(server, conversation)["legs"][0]["status"] == "answered"


def test_what_is_typed_survives_the_lists_refresh(page, server, home, live):
    leg, conversation = live
    _, panel = open_leg(page, leg, conversation)
    panel.get_by_label("Transfer to").fill("447700900000")
    newer, _ = start_call(server, home.url)  # the list changes: a new call at its top
    expect(page.locator(f'.actions[data-leg="{newer}"]')).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator(f'.actions[data-leg="{leg}"]').get_by_label("Transfer to")).to_have_value("447700900000")
