"""POST /api/calls/<leg>/actions through the real server (serve.py, as `make run` starts it) against stand-ins of
two regions of Vonage's Voice API over HTTPS on loopback, which check every request's method, path, body and JWT."""

import pytest
import requests

from support import keys
from support.live_calls import (
    APPLICATION_ID,
    BEARER,
    TOKEN,
    act,
    call,
    call_control_server,
    end_call,
    start_call,
)
from support.servers import fresh_interpreter, run_server, start_up_error
from support.voice_standin import VoiceStandIn


@pytest.fixture(scope="module")
def regions(certificate):
    """Two regions of the Voice API: the first is VONAGE_API_HOST, both are in VONAGE_TRUSTED_HOSTS."""
    public_key = keys.rsa_key().public_key()
    started = [VoiceStandIn(certificate, APPLICATION_ID, public_key) for _ in range(2)]
    yield started
    for region in started:
        region.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, certificate, regions):
    with call_control_server(tmp_path_factory.mktemp("live"), certificate, regions) as url:
        yield url


@pytest.fixture
def home(regions):
    return regions[0]


@pytest.fixture
def live(server, home):
    """A call in progress in the home region: (leg, conversation)."""
    leg, conversation = start_call(server, home.url)
    home.hold(leg)
    return leg, conversation


ACTIONS = [
    ({"action": "hangup"}, "PUT", "", {"action": "hangup"}),
    ({"action": "mute"}, "PUT", "", {"action": "mute"}),
    ({"action": "unmute"}, "PUT", "", {"action": "unmute"}),
    ({"action": "earmuff"}, "PUT", "", {"action": "earmuff"}),
    ({"action": "unearmuff"}, "PUT", "", {"action": "unearmuff"}),
    ({"action": "say", "text": "Please hold"}, "PUT", "/talk", {"text": "Please hold", "language": "en-US"}),
    ({"action": "stop-say"}, "DELETE", "/talk", None),
    ({"action": "dtmf", "digits": "1234#"}, "PUT", "/dtmf", {"digits": "1234#"}),
]


@pytest.mark.parametrize(("asked", "method", "route", "sent"), ACTIONS, ids=[item[0]["action"] for item in ACTIONS])
def test_each_action_reaches_the_calls_region_as_vonage_expects(server, home, live, asked, method, route, sent):
    leg, conversation = live
    before = len(home.requests())
    answered = act(server, leg, **asked)
    assert answered.status_code == 202, answered.text
    assert answered.json()["outcome"] == "accepted"
    (received,) = home.requests()[before:]
    assert (received.method, received.path, received.body) == (method, f"/v1/calls/{leg}{route}", sent)
    assert received.token_verified and received.claims["application_id"] == APPLICATION_ID
    (stored,) = call(server, conversation)["actions"]
    assert (stored["action"], stored["outcome"], stored["leg"]) == (asked["action"], "accepted", leg)
    assert stored["requested_by"] == "127.0.0.1"


def test_transfer_sends_the_answer_urls_connect_as_an_ncco(server, home, live):
    leg, _ = live
    answered = act(server, leg, action="transfer", to="Bob")
    assert answered.status_code == 202, answered.text
    received = home.requests()[-1]
    assert (received.method, received.path) == ("PUT", f"/v1/calls/{leg}")
    assert received.body["action"] == "transfer"
    assert received.body["destination"]["type"] == "ncco"
    assert received.body["destination"]["ncco"][-1]["endpoint"] == [{"type": "app", "user": "Bob"}]


def test_transfer_to_a_number_the_answer_url_refuses_is_refused_with_its_reason(server, home, live):
    leg, conversation = live
    before = len(home.requests())
    refused = act(server, leg, action="transfer", to="449098790000")
    assert refused.status_code == 400
    assert "PREMIUM_RATE number, blocked by BLOCKED_NUMBER_TYPES" in refused.json()["error"]
    assert len(home.requests()) == before
    (stored,) = call(server, conversation)["actions"]
    assert stored["outcome"] == "not sent" and "PREMIUM_RATE" in stored["result"]


def test_a_call_in_another_region_is_acted_on_there(server, regions):
    home, other = regions
    leg, conversation = start_call(server, other.url)
    other.hold(leg)
    before_home, before_other = len(home.requests()), len(other.requests())
    assert act(server, leg, action="hangup").status_code == 202
    assert len(home.requests()) == before_home
    (received,) = other.requests()[before_other:]
    assert received.path == f"/v1/calls/{leg}"


def test_a_call_without_region_url_is_acted_on_at_vonage_api_host(server, home):
    leg, _ = start_call(server, None)
    home.hold(leg)
    before = len(home.requests())
    assert act(server, leg, action="mute").status_code == 202
    assert [request.path for request in home.requests()[before:]] == [f"/v1/calls/{leg}"]


def test_a_region_url_on_an_untrusted_host_is_never_sent_the_jwt(server, certificate, regions):
    stranger = VoiceStandIn(certificate, APPLICATION_ID, keys.rsa_key().public_key())
    try:
        leg, conversation = start_call(server, stranger.url)
        stranger.hold(leg)
        before = [len(region.requests()) for region in regions]
        refused = act(server, leg, action="hangup")
        assert refused.status_code == 502
        assert f"{stranger.host} is not one of Vonage's API hosts" in refused.json()["error"]
        assert stranger.requests() == []
        assert [len(region.requests()) for region in regions] == before
        (stored,) = call(server, conversation)["actions"]
        assert stored["outcome"] == "not sent"
    finally:
        stranger.close()


def test_the_wrong_region_answers_404_and_the_action_is_a_502_with_vonages_reason(server, home, regions):
    # The answer named the home region, but Vonage serves the call elsewhere: the home region does not know the leg.
    leg, conversation = start_call(server, home.url)
    refused = act(server, leg, action="hangup")
    assert refused.status_code == 502
    message = refused.json()["error"]
    assert f"Vonage answered 404: Not Found; Call {leg} was not found" in message
    assert "another region" in message
    (stored,) = call(server, conversation)["actions"]
    assert (stored["outcome"], stored["vonage_status"]) == ("refused", 404)


def test_vonages_400_is_a_502_with_its_reason(server, home, live):
    leg, _ = live
    home.refuse_next(400, {"title": "Bad Request", "invalid_parameters": [{"name": "text", "reason": "too long"}]})
    refused = act(server, leg, action="say", text="Hello")
    assert refused.status_code == 502
    assert refused.json()["error"] == "Vonage answered 400: Bad Request; text: too long"


def test_a_429_is_tried_again_after_retry_after_and_the_timeline_says_throttled(server, home, live):
    leg, conversation = live
    before = len(home.requests())
    home.throttle(1)
    answered = act(server, leg, action="hangup")
    assert answered.status_code == 202, answered.text
    assert [request.path for request in home.requests()[before:]] == [f"/v1/calls/{leg}"] * 2
    outcomes = [(item["outcome"], item["result"]) for item in call(server, conversation)["actions"]]
    assert outcomes == [("throttled", "throttled, retrying in 1 s"), ("accepted", "Vonage accepted it (204)")]


def test_throttling_past_the_bound_is_a_503_with_retry_after(server, home, live):
    leg, _ = live
    before = len(home.requests())
    home.throttle(10)
    try:
        refused = act(server, leg, action="mute")
    finally:
        home.throttle(0)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert "still throttling (429) after 3 tries" in refused.json()["error"]
    assert len(home.requests()) - before == 3


def test_a_leg_that_has_ended_is_a_409_and_nothing_is_sent(server, home, live):
    leg, conversation = live
    end_call(server, leg, conversation)
    before = len(home.requests())
    refused = act(server, leg, action="hangup")
    assert refused.status_code == 409
    assert "has ended (completed)" in refused.json()["error"]
    assert len(home.requests()) == before


def test_an_unknown_leg_is_a_404(server):
    refused = act(server, "no-such-leg", action="hangup")
    assert refused.status_code == 404
    assert "no leg no-such-leg in the call log" in refused.json()["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [({"action": "explode"}, "'explode' is not an action"), ({"action": "say"}, "say needs 'text'")],
)
def test_a_bad_action_is_a_400_naming_the_fix(server, home, live, body, says):
    leg, _ = live
    before = len(home.requests())
    refused = act(server, live[0], **body)
    assert refused.status_code == 400
    assert says in refused.json()["error"]
    assert len(home.requests()) == before


def test_a_body_that_is_not_a_json_object_is_a_400(server, live):
    refused = requests.post(f"{server}/api/calls/{live[0]}/actions", data="hangup", headers=BEARER, timeout=10)
    assert refused.status_code == 400
    assert '{"action": "hangup"}' in refused.json()["error"]


def test_the_token_is_taken_only_from_the_authorization_header(server, home, live):
    leg, _ = live
    before = len(home.requests())
    port = server.rsplit(":", 1)[1]
    cookie = requests.post(
        f"{server}/api/calls/{leg}/actions",
        json={"action": "hangup"},
        cookies={f"call_log_token_{port}": TOKEN},
        timeout=10,
    )
    assert cookie.status_code == 401
    assert "the page's cookie is not taken here" in cookie.json()["error"]
    query = requests.post(
        f"{server}/api/calls/{leg}/actions", params={"token": TOKEN}, json={"action": "hangup"}, timeout=10
    )
    assert query.status_code == 401
    assert len(home.requests()) == before


def test_a_page_of_another_origin_is_refused_even_with_the_token(server, home, live):
    leg, _ = live
    before = len(home.requests())
    refused = act(server, leg, headers={**BEARER, "Origin": "http://127.0.0.1:1"}, action="hangup")
    assert refused.status_code == 403
    assert "Origin: http://127.0.0.1:1" in refused.json()["error"]
    same_site = act(server, leg, headers={**BEARER, "Sec-Fetch-Site": "same-site"}, action="hangup")
    assert same_site.status_code == 403
    assert len(home.requests()) == before
    own = act(server, leg, headers={**BEARER, "Origin": server}, action="mute")
    assert own.status_code == 202


def test_with_call_control_off_the_route_is_a_404_naming_it_and_the_page_has_no_actions(tmp_path):
    with run_server(CALL_LOG_TOKEN=TOKEN, DATABASE_URL=f"sqlite:///{tmp_path / 'calls.db'}") as url:
        start_call(url, None)
        refused = act(url, "leg-1", action="hangup")
        page = requests.get(f"{url}/calls", headers=BEARER, timeout=10).text
    assert refused.status_code == 404
    assert "set CALL_CONTROL=on" in refused.json()["error"]
    assert "call-control-token" not in page and TOKEN not in page
    assert 'class="actions"' not in page


def test_with_call_control_on_the_page_carries_the_token_for_its_own_script(server, live):
    page = requests.get(f"{server}/calls", headers=BEARER, timeout=10)
    assert f'<meta name="call-control-token" content="{TOKEN}">' in page.text
    assert f'<div class="actions" data-leg="{live[0]}">' in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self';")
    partial = requests.get(f"{server}/calls", params={"partial": "list"}, headers=BEARER, timeout=10).text
    assert TOKEN not in partial


def test_call_control_without_the_applications_key_stops_start_up_with_one_line(tmp_path):
    line = start_up_error(tmp_path, CALL_CONTROL="on", VONAGE_APPLICATION_ID=APPLICATION_ID)
    assert line.startswith("error: CALL_CONTROL=on needs VONAGE_PRIVATE_KEY, which is not set; for example")


# In an interpreter that has loaded nothing yet, the app built, a call answered and read back (Flask's request path
# warmed), then the first actions of several kinds: what they import is what a request would open files for
# (tests/test_imports.py says why that matters).
IMPORTS_SCRIPT = """
import json, os, sys
folder, region, bundle, key = sys.argv[1:5]
os.environ.update({"REQUESTS_CA_BUNDLE": bundle, "NO_PROXY": "127.0.0.1"})
from app import close_app, create_app

app = create_app({
    "DATABASE_URL": "sqlite:///" + folder + "/calls.db", "INSTANCE_PATH": folder + "/instance",
    "CALL_LOG_TOKEN": "imports-test-token-0123", "CALL_CONTROL": "on", "VONAGE_PRIVATE_KEY": key,
    "VONAGE_APPLICATION_ID": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "VONAGE_TRUSTED_HOSTS": region,
})
client = app.test_client()
bearer = {"Authorization": "Bearer imports-test-token-0123"}
import logging
from runtime.logs import LOGGER_NAME
logging.getLogger(LOGGER_NAME).disabled = True  # its log thread would print after the last line, which is read
logging.getLogger(LOGGER_NAME + ".call_control").disabled = True
for leg in ("leg-warm", "leg-1"):
    client.get("/voice/answer", query_string={"from_user": "Alice", "to": "447700900000", "uuid": leg,
               "conversation_uuid": "CON-" + leg, "region_url": "https://" + region})
    app.extensions["call_log"].client.flush()
    client.post("/voice/event", json={"uuid": leg, "conversation_uuid": "CON-" + leg, "status": "answered",
                "direction": "inbound", "to": "Alice", "timestamp": "2026-12-07T10:00:00.000Z"})
client.get("/api/calls/CON-leg-1", headers=bearer)
before = set(sys.modules)
statuses = [client.post("/api/calls/leg-warm/actions", json={"action": "mute"}, headers=bearer).status_code]
for body in ({"action": "say", "text": "Hello"}, {"action": "transfer", "to": "Bob"}, {"action": "dtmf"}):
    statuses.append(client.post("/api/calls/leg-1/actions", json=body, headers=bearer).status_code)
close_app(app)
print(json.dumps({"statuses": statuses, "imported": sorted(set(sys.modules) - before)}))
"""


def test_an_action_imports_no_module_once_the_app_is_built(tmp_path, certificate, regions):
    home = regions[0]
    home.holds_every_leg = True
    (tmp_path / "private.key").write_bytes(keys.pkcs8())
    try:
        outcome = fresh_interpreter(
            IMPORTS_SCRIPT, str(tmp_path), home.host, str(certificate[0]), str(tmp_path / "private.key")
        )
    finally:
        home.holds_every_leg = False
    assert outcome["statuses"] == [202, 202, 400, 400], outcome  # Bob is not in CALLABLE_USERS here
    assert outcome["imported"] == [], f"modules an action imported: {outcome['imported']}"
