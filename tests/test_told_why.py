"""Callers told why a call failed: synchronous connects, the outcome's NCCO, ringing time and machine detection."""

import json
import logging
import time

import pytest
import requests
from vonage_voice.models import Connect, Talk

from config import ConfigError, settings_from
from conftest import CALL_LOG_TOKEN, STATUS_EVENTS, load_fixture
from edge.signatures import sign_webhook
from ncco import (
    VOICEMAIL_MESSAGE,
    CallPlan,
    app_connect_ncco,
    connect_ncco,
    refusal_ncco,
    told_why,
)
from simulator.client import Simulator
from simulator.model import Scenario
from support import servers
from support.calls import move_table
from vonage_helper.ncco_models import parse_ncco

FIXTURE = {path.stem: path for path in STATUS_EVENTS}
BUSY = load_fixture(FIXTURE["busy"])  # the phone leg a connect rang, ended busy, as Vonage posts it
AUTH = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}
CONNECT_EVENT_URL = "/voice/event/connect"  # where a connect's events go (its eventUrl)


def said(ncco) -> str:
    actions = parse_ncco(ncco)
    assert all(isinstance(action, Talk) for action in actions)
    return " ".join(action.text for action in actions)


# --- what the caller hears, without HTTP --------------------------------------------------------------------


def test_a_busy_callee_is_told_in_one_sentence_as_an_ncco_of_one_talk():
    told = told_why(BUSY, CallPlan())
    assert told.ncco == [
        {"action": "talk", "text": "The number you called is busy. Please try again later.", "language": "en-US"}
    ]
    assert json.loads(told.body) == told.ncco
    assert told.reason == "busy (busy): told the caller: The number you called is busy. Please try again later."


@pytest.mark.parametrize(
    "status, detail, sentence",
    [
        ("unanswered", "unavailable", "The number you called is not available. Please try again later."),
        ("unanswered", "timeout", "The number you called did not answer. Please try again later."),
        ("unanswered", "carrier_timeout", "The number you called did not answer. Please try again later."),
        ("timeout", None, "The number you called did not answer. Please try again later."),
        ("rejected", "invalid_number", "The number you called is not a valid number. Please check it and try again."),
        ("rejected", "restricted", "The number you called cannot be called from this service."),
        ("rejected", "declined", "The number you called declined the call. Please try again later."),
        ("failed", "cannot_route", "The call could not be put through. Please try again later."),
        ("failed", "number_out_of_service", "The number you called is out of service."),
        ("failed", "internal_error", "The call failed because of a network problem. Please try again later."),
        ("failed", "something_new", "The call could not be connected. Please try again later."),
        ("rejected", None, "The number you called did not take the call. Please try again later."),
    ],
)
def test_each_failed_outcome_and_detail_has_its_sentence(status, detail, sentence):
    event = {**BUSY, "status": status, **({"detail": detail} if detail else {"detail": None})}
    assert said(told_why(event, CallPlan()).ncco) == sentence


def test_an_app_user_who_is_busy_is_the_person_you_called():
    event = {**BUSY, "to": "Alice"}
    assert said(told_why(event, CallPlan()).ncco) == "The person you called is busy. Please try again later."


@pytest.mark.parametrize(
    "name", ["started", "ringing", "answered", "completed", "cancelled", "human", "machine", "disconnected"]
)
def test_any_other_status_leaves_the_call_as_it_is(name):
    assert told_why(load_fixture(FIXTURE[name]), CallPlan()) is None


def test_the_callers_own_leg_failing_is_nobody_to_tell():
    assert told_why({**BUSY, "direction": "inbound"}, CallPlan()) is None


@pytest.mark.parametrize("event", [{"status": ["busy"]}, {"status": "busy", "detail": {"x": 1}, "to": 7}, {}])
def test_odd_payloads_never_raise(event):
    told_why(event, CallPlan())


def test_the_language_and_style_apply_to_every_sentence_the_server_speaks():
    plan = CallPlan(language="de-DE", style=3)
    for ncco in (
        connect_ncco("447700900000", plan),
        app_connect_ncco("Alice", plan),
        refusal_ncco("calls to that user are not allowed", plan.language, plan.style),
        told_why(BUSY, plan).ncco,
    ):
        talk = parse_ncco(ncco)[0]
        assert (talk.language, talk.style) == ("de-DE", 3)


def test_without_tts_style_no_style_is_sent():
    assert "style" not in told_why(BUSY, CallPlan()).ncco[0]


# --- the connect: synchronous, ringing time, machine detection ----------------------------------------------


def test_a_connect_with_an_event_url_is_synchronous_and_valid_for_the_sdk():
    plan = CallPlan(event_url="https://abc123.ngrok.app/voice/event/connect", ringing_timeout=25)
    connect = parse_ncco(connect_ncco("447700900000", plan))[1]
    assert (connect.eventType, connect.eventUrl, connect.timeout) == (
        "synchronous",
        ["https://abc123.ngrok.app/voice/event/connect"],
        25,
    )


@pytest.mark.parametrize("mode, key", [("hangup", "hangup"), ("message", "continue")])
def test_machine_detection_on_a_phone_connect(mode, key):
    plan = CallPlan(machine_detection=mode)
    assert parse_ncco(connect_ncco("447700900000", plan))[1].machineDetection == key
    # An app user has no voicemail for Vonage to detect.
    assert "machineDetection" not in app_connect_ncco("Alice", plan)[1]


def test_machine_detection_off_leaves_the_key_out():
    assert "machineDetection" not in connect_ncco("447700900000", CallPlan())[1]


def test_a_machine_with_hangup_tells_the_caller_the_call_reached_voicemail():
    machine = load_fixture(FIXTURE["machine"])
    assert said(told_why(machine, CallPlan(machine_detection="hangup")).ncco) == (
        "The call reached voicemail, so it was ended."
    )


def test_a_machine_with_message_leaves_a_short_message():
    told = told_why(load_fixture(FIXTURE["machine"]), CallPlan(machine_detection="message", style=1))
    assert said(told.ncco) == VOICEMAIL_MESSAGE and told.ncco[0]["style"] == 1
    assert told.reason == f"machine: left a message: {VOICEMAIL_MESSAGE}"


# --- the settings -------------------------------------------------------------------------------------------


def test_ring_timeout_and_its_older_name_set_the_ringing_time_and_the_new_name_wins():
    assert settings_from({"RINGING_TIMEOUT": "20"}).call_plan.ringing_timeout == 20
    assert settings_from({"RING_TIMEOUT": "30"}).call_plan.ringing_timeout == 30
    assert settings_from({"RINGING_TIMEOUT": "20", "RING_TIMEOUT": "30"}).call_plan.ringing_timeout == 30
    assert settings_from({}).call_plan.ringing_timeout == 60


def test_style_and_machine_detection_are_read_into_the_plan():
    plan = settings_from({"TTS_STYLE": "6", "MACHINE_DETECTION": "Hangup"}).call_plan
    assert (plan.style, plan.machine_detection) == (6, "hangup")
    assert settings_from({}).call_plan.machine_detection == "off"


@pytest.mark.parametrize(
    "variable, value, line",
    [
        ("RING_TIMEOUT", "0", "RING_TIMEOUT: 0 is outside 1-120; for example RING_TIMEOUT=60"),
        ("RING_TIMEOUT", "soon", "RING_TIMEOUT: 'soon' is not a whole number; for example RING_TIMEOUT=60"),
        (
            "MACHINE_DETECTION",
            "voicemail",
            "MACHINE_DETECTION: 'voicemail' is not one of off, hangup, message; for example MACHINE_DETECTION=hangup",
        ),
        (
            "TTS_STYLE",
            "-1",
            "TTS_STYLE: -1 is outside 0-99; for example TTS_STYLE=2 "
            "(the styles of each language are in Vonage's text-to-speech guide)",
        ),
    ],
)
def test_bad_setting_is_one_line_naming_it_with_an_example(variable, value, line):
    with pytest.raises(ConfigError) as error:
        settings_from({variable: value})
    assert str(error.value) == line


# --- over HTTP: the answer's eventUrl, and the event route's reply -------------------------------------------


def connect_in(response) -> Connect:
    return parse_ncco(response.get_json())[1]


def test_without_public_url_the_event_url_is_the_requests_own_host(client):
    response = client.get("/voice/answer?to=447700900000&from_user=Alice", base_url="http://voice.example:3000")
    assert connect_in(response).eventUrl == ["http://voice.example:3000/voice/event/connect"]


def test_behind_a_tls_proxy_the_event_url_keeps_the_scheme_the_proxy_was_reached_with(client):
    response = client.get(
        "/voice/answer?to=447700900000&from_user=Alice",
        base_url="http://abc123.ngrok.app",
        headers={"X-Forwarded-Proto": "https"},
    )
    assert connect_in(response).eventUrl == ["https://abc123.ngrok.app/voice/event/connect"]


@pytest.mark.parametrize("settings_env", [{"PUBLIC_URL": "https://abc123.ngrok.app/"}])
def test_public_url_sets_the_event_url(client):
    response = client.get("/voice/answer?to=447700900000&from_user=Alice", base_url="http://127.0.0.1:3000")
    assert connect_in(response).eventUrl == ["https://abc123.ngrok.app/voice/event/connect"]


@pytest.mark.parametrize("settings_env", [{"TTS_LANGUAGE": "en-GB", "TTS_STYLE": "2"}])
def test_a_busy_outcome_is_stored_as_received_then_answered_with_the_ncco_and_recorded(client, call_log, caplog):
    body = json.dumps(BUSY, indent=1)
    with caplog.at_level(logging.INFO, logger="voice"):
        response = client.post(CONNECT_EVENT_URL, data=body, content_type="application/json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    talk = parse_ncco(response.get_json())[0]
    assert (talk.text, talk.language, talk.style) == (
        "The number you called is busy. Please try again later.",
        "en-GB",
        2,
    )
    call_log.client.flush()
    call = call_log.reader.get_call(BUSY["conversation_uuid"])
    (leg,) = call["legs"]
    assert leg["status"] == "busy" and leg["events"][0]["payload"] == BUSY
    (outcome,) = call["answers"]
    assert (outcome["route"], outcome["connected"], outcome["requested"]) == ("outcome", False, "447700900000")
    assert outcome["reason"].startswith("busy (busy): told the caller: The number you called is busy.")
    told = [record.getMessage() for record in caplog.records if "connect outcome" in record.getMessage()]
    assert told == [f"connect outcome on leg {BUSY['uuid']}: {outcome['reason']}"]


def test_a_repeated_outcome_gets_the_same_ncco_and_is_recorded_once(client, call_log):
    first = client.post(CONNECT_EVENT_URL, json=BUSY)
    again = client.post(CONNECT_EVENT_URL, json=BUSY)
    assert first.get_json() == again.get_json() and again.status_code == 200
    call_log.client.flush()
    assert len(call_log.reader.get_call(BUSY["conversation_uuid"])["answers"]) == 1


def test_the_applications_event_url_answers_a_failure_204_as_ever_and_tells_nobody(client, call_log):
    # Vonage asks what to tell the caller only at the connect's eventUrl; the application's event URL also hears
    # failures nobody waits on (the legs of calls `flask call` places).
    response = client.post("/voice/event", json=BUSY)
    assert (response.status_code, response.data) == (204, b"")
    call_log.client.flush()
    call = call_log.reader.get_call(BUSY["conversation_uuid"])
    assert call["answers"] == [] and call["legs"][0]["status"] == "busy"


@pytest.mark.parametrize("name", ["started", "ringing", "answered", "completed", "machine"])
def test_a_status_that_is_not_a_failure_gets_an_empty_204(client, name):
    response = client.post(CONNECT_EVENT_URL, json=load_fixture(FIXTURE[name]))
    assert (response.status_code, response.data) == (204, b"")


def test_an_outcome_that_cannot_be_stored_is_503_not_an_ncco(client, call_log):
    move_table(call_log, "events", "events_away")
    try:
        response = client.post(CONNECT_EVENT_URL, json=BUSY)
    finally:
        move_table(call_log, "events_away", "events")
    assert response.status_code == 503 and "Retry-After" in response.headers


@pytest.mark.parametrize("settings_env", [{"VONAGE_SIGNATURE_SECRET": "told-why-secret-0123456789abcdef"}])
def test_the_connects_event_url_is_signed_like_every_webhook(client, call_log):
    unsigned = client.post(CONNECT_EVENT_URL, json=BUSY)
    body = json.dumps(BUSY).encode()
    auth = sign_webhook("told-why-secret-0123456789abcdef", "POST", body, [], time.time())
    signed = client.post(CONNECT_EVENT_URL, data=body, content_type="application/json", headers={"Authorization": auth})
    assert not 200 <= unsigned.status_code < 300 and signed.status_code == 200
    assert call_log.reader.count_events() == 1


@pytest.mark.parametrize("settings_env", [{"MACHINE_DETECTION": "message"}])
def test_a_machine_outcome_with_message_is_answered_with_the_message(client):
    response = client.post(CONNECT_EVENT_URL, json=load_fixture(FIXTURE["machine"]))
    assert said(response.get_json()) == VOICEMAIL_MESSAGE


def test_the_page_shows_the_caller_was_told_why(client, call_log):
    client.post(CONNECT_EVENT_URL, json=BUSY)
    call_log.client.flush()
    page = client.get("/calls?partial=list", headers=AUTH).get_data(as_text=True)
    assert "told why</span> 447700900000: busy (busy): told the caller: The number you called is busy." in page


# --- end to end: the production server, its eventUrl pointing at itself, played by the simulator -------------


@pytest.fixture(scope="module")
def public_server(tmp_path_factory):
    """The production server with PUBLIC_URL set to its own address, so a connect's eventUrl reaches it."""
    port = servers.free_port()
    database = tmp_path_factory.mktemp("told-why") / "calls.db"
    settings = {
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DATABASE_URL": f"sqlite:///{database}",
        "CALL_LOG_TOKEN": CALL_LOG_TOKEN,
        "INBOUND_ROUTES": "447700900001=Alice",
        "CALLABLE_USERS": "Bob",
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(servers, "free_port", lambda: port)
        with servers.run_server(**settings) as url:
            yield url


def recorded(url: str, conversation: str, answers: int) -> dict:
    """The call as the call log holds it, once its `answers` decisions (stored without delaying a reply) are in."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        call = requests.get(f"{url}/api/calls/{conversation}", headers=AUTH, timeout=10).json()
        if len(call.get("answers", [])) >= answers:
            return call
        time.sleep(0.02)  # a worker sends its answer decisions every 100 ms
    raise AssertionError(f"{conversation} has fewer than {answers} answer decisions")


def test_busy_scenario_end_to_end_the_caller_is_told_why_through_the_public_event_url(public_server):
    result = Simulator(public_server).play(Scenario("busy", "447700900000"))
    assert result.ok, result.problems
    assert result.ncco[1]["eventUrl"] == [f"{public_server}/voice/event/connect"]
    assert said(result.told_why) == "The number you called is busy. Please try again later."
    call = recorded(public_server, result.conversation_uuid, answers=2)
    assert [(answer["route"], answer["connected"]) for answer in call["answers"]] == [
        ("answer", True),
        ("outcome", False),
    ]
    assert {leg["direction"]: leg["status"] for leg in call["legs"]} == {"inbound": "completed", "outbound": "busy"}
    page = requests.get(f"{public_server}/calls?partial=list", headers=AUTH, timeout=10).text
    assert "told why" in page and "app → phone" in page


@pytest.mark.parametrize(
    "scenario, shape, callee",
    [
        (Scenario("inbound", "447700900001"), "phone → app", "Alice"),
        (Scenario("app-to-app", "Bob"), "app → app", "Bob"),
        (Scenario("outbound", "447700900000"), "app → phone", "447700900000"),
    ],
    ids=lambda value: getattr(value, "name", None),
)
def test_each_call_shape_end_to_end_is_recorded_with_its_direction(public_server, scenario, shape, callee):
    result = Simulator(public_server).play(scenario)
    assert result.ok, result.problems
    call = recorded(public_server, result.conversation_uuid, answers=1)
    assert call["answers"][0]["callee"] == callee
    legs = {leg["direction"]: leg for leg in call["legs"]}
    assert legs["outbound"]["to"] == callee and legs["outbound"]["status"] == "completed"
    page = requests.get(f"{public_server}/calls?partial=list", headers=AUTH, timeout=10).text
    assert shape in page


def test_an_unanswered_user_in_an_inbound_call_is_the_person_you_called(public_server):
    result = Simulator(public_server).play(Scenario("inbound", "447700900001", outcome="unanswered"))
    assert result.ok, result.problems
    assert said(result.told_why) == "The person you called is not available. Please try again later."
