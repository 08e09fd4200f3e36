"""Calls to and between app users: phone to app, app to app, app to phone; the settings that route them."""

import logging

import pytest
from vonage_voice.models import AppEndpoint, Connect, PhoneEndpoint, Talk

from config import ConfigError, settings_from
from ncco import APP_TO_APP, INBOUND, OUTBOUND, CallPlan, CallRouting, decide_answer
from policy import DestinationPolicy, looks_like_phone_number
from vonage_helper.ncco_models import parse_ncco

# A phone calling the application's number, as Vonage asks the answer URL (docs/platform.md: `from`, no `from_user`).
PHONE_CALLS_APPLICATION = {
    "from": "447700900123",
    "to": "447700900001",
    "uuid": "5b7b9a3e-0c7e-4f55-9a41-2f3d1c0e8a11",
    "conversation_uuid": "CON-7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6",
    "region_url": "https://api-eu-1.vonage.com",
}
# A Client SDK user calling another by name: serverCall(mapOf("to" to "Bob")).
ALICE_CALLS_BOB = {
    "from_user": "Alice",
    "to": "Bob",
    "endpoint_type": "app",
    "uuid": "2da93da3-bcac-47ee-b48e-4a18fae7db08",
    "conversation_uuid": "CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77",
    "region_url": "https://api-eu-1.vonage.com",
    "custom_data": {},
}
ROUTES = CallRouting(inbound_routes=(("447700900001", "Alice"),), callable_users=frozenset({"Bob"}))
EVENT_URL = "https://abc123.ngrok.app/voice/event/connect"


def connect_of(ncco) -> Connect | None:
    connects = [action for action in parse_ncco(ncco) if isinstance(action, Connect)]
    return connects[0] if connects else None


def spoken(ncco) -> str:
    return " ".join(action.text for action in parse_ncco(ncco) if isinstance(action, Talk))


# --- number or name: decided from `to` itself ---------------------------------------------------------------


@pytest.mark.parametrize("to", ["447700900000", "+44 7700 900000", "0044 (7700) 900-000", "07700 900000", "123"])
def test_a_to_written_with_digits_is_a_phone_number(to):
    assert looks_like_phone_number(to)


@pytest.mark.parametrize("to", ["Bob", "alice.smith", "agent-7", "user_2", "+Bob", "Bob 1"])
def test_a_to_with_letters_is_a_user_name(to):
    assert not looks_like_phone_number(to)


# --- phone to app --------------------------------------------------------------------------------------------


def test_phone_calling_a_routed_number_rings_its_app_user_showing_the_callers_number():
    decision = decide_answer(PHONE_CALLS_APPLICATION, DestinationPolicy(), CallPlan(event_url=EVENT_URL), ROUTES)
    assert (decision.shape, decision.callee, decision.requested) == (INBOUND, "Alice", "447700900001")
    assert decision.ncco == [
        {"action": "talk", "text": "Please wait while we connect you.", "language": "en-US"},
        {
            "action": "connect",
            "endpoint": [{"type": "app", "user": "Alice"}],
            "from": "447700900123",
            "timeout": 60,
            "limit": 7200,
            "eventType": "synchronous",
            "eventUrl": [EVENT_URL],
        },
    ]
    connect = connect_of(decision.ncco)
    assert isinstance(connect.endpoint[0], AppEndpoint) and connect.endpoint[0].user == "Alice"


def test_inbound_route_numbers_match_in_any_spelling():
    settings = settings_from({"INBOUND_ROUTES": "07700 900001=Alice", "DEFAULT_REGION": "GB"})
    decision = decide_answer(
        PHONE_CALLS_APPLICATION, settings.destination_policy, settings.call_plan, settings.call_routing
    )
    assert decision.callee == "Alice"


def test_phone_calling_an_unrouted_number_rings_the_default_user():
    routing = CallRouting(inbound_routes=(("447700900002", "Bob"),), inbound_default_user="Carol")
    decision = decide_answer(PHONE_CALLS_APPLICATION, DestinationPolicy(), CallPlan(), routing)
    assert connect_of(decision.ncco).endpoint[0].user == "Carol"


def test_phone_call_with_nobody_to_take_it_hears_why_and_the_log_names_the_fix():
    decision = decide_answer(PHONE_CALLS_APPLICATION, DestinationPolicy(), CallPlan(), CallRouting())
    assert connect_of(decision.ncco) is None
    assert spoken(decision.ncco) == (
        "Sorry, this call cannot be connected: nobody is available to take calls to this number."
    )
    assert decision.reason == (
        "no app user takes calls to 447700900001: set INBOUND_ROUTES "
        "(for example INBOUND_ROUTES=447700900001=Alice) or INBOUND_DEFAULT_USER"
    )


@pytest.mark.parametrize("caller", ["Unknown", "anonymous", ""])
def test_a_caller_with_no_number_reaches_the_user_without_a_from(caller):
    fields = {**PHONE_CALLS_APPLICATION, "from": caller}
    routing = CallRouting(inbound_default_user="Alice")
    decision = decide_answer(fields, DestinationPolicy(own_number="447700900001"), CallPlan(), routing)
    connect = decision.ncco[1]
    assert connect["endpoint"] == [{"type": "app", "user": "Alice"}] and "from" not in connect
    assert connect_of(decision.ncco).from_ is None


def test_a_request_with_neither_from_nor_from_user_to_a_number_is_still_a_call_to_that_number():
    # curl, `flask ncco` and the README's examples: unchanged unless `to` is one of the application's numbers.
    decision = decide_answer({"to": "447700900000"}, DestinationPolicy(), CallPlan(), ROUTES)
    assert (decision.shape, decision.callee) == (OUTBOUND, "447700900000")
    to_our_number = decide_answer({"to": "447700900001"}, DestinationPolicy(), CallPlan(), ROUTES)
    assert to_our_number.shape == INBOUND
    with_a_default_user = CallRouting(inbound_default_user="Carol")
    assert decide_answer({"to": "447700900000"}, DestinationPolicy(), CallPlan(), with_a_default_user).shape == OUTBOUND


# --- app to app ----------------------------------------------------------------------------------------------


def test_app_user_calling_a_callable_user_rings_them_with_no_from():
    decision = decide_answer(ALICE_CALLS_BOB, DestinationPolicy(), CallPlan(event_url=EVENT_URL), ROUTES)
    assert (decision.shape, decision.callee) == (APP_TO_APP, "Bob")
    assert decision.ncco[1] == {
        "action": "connect",
        "endpoint": [{"type": "app", "user": "Bob"}],
        "timeout": 60,
        "limit": 7200,
        "eventType": "synchronous",
        "eventUrl": [EVENT_URL],
    }
    connect = connect_of(decision.ncco)
    assert connect.from_ is None and connect.randomFromNumber is None


def test_any_user_is_callable_with_a_star():
    decision = decide_answer(
        ALICE_CALLS_BOB, DestinationPolicy(), CallPlan(), CallRouting(callable_users=frozenset({"*"}))
    )
    assert decision.callee == "Bob"


@pytest.mark.parametrize(
    "routing, reason",
    [
        (CallRouting(), "CALLABLE_USERS is not set, so no app user may be called (asked for 'Mallory')"),
        (ROUTES, "the app user 'Mallory' is not in CALLABLE_USERS"),
    ],
)
def test_a_user_not_callable_gets_a_spoken_refusal(routing, reason):
    decision = decide_answer({**ALICE_CALLS_BOB, "to": "Mallory"}, DestinationPolicy(), CallPlan(), routing)
    assert connect_of(decision.ncco) is None
    assert spoken(decision.ncco) == "Sorry, this call cannot be connected: calls to that user are not allowed."
    assert decision.reason == reason


def test_user_names_never_go_through_the_number_policy_nor_numbers_through_callable_users():
    everyone = CallRouting(callable_users=frozenset({"*"}))
    premium = decide_answer({**ALICE_CALLS_BOB, "to": "+44 909 879 0000"}, DestinationPolicy(), CallPlan(), everyone)
    assert premium.connected is False and "PREMIUM_RATE" in premium.reason


# --- app to phone, with the application's numbers -----------------------------------------------------------


def test_app_user_calling_a_number_still_connects_to_that_phone():
    fields = {**ALICE_CALLS_BOB, "to": "447700900000"}
    decision = decide_answer(fields, DestinationPolicy(), CallPlan(), ROUTES)
    assert decision.shape == OUTBOUND
    assert isinstance(connect_of(decision.ncco).endpoint[0], PhoneEndpoint)


def test_app_user_calling_an_inbound_route_number_is_refused_like_our_own_number():
    policy = settings_from({"INBOUND_ROUTES": "447700900001=Alice"}).destination_policy
    decision = decide_answer({**ALICE_CALLS_BOB, "to": "+44 7700 900001"}, policy, CallPlan(), ROUTES)
    assert decision.connected is False
    assert "one of this application's numbers" in decision.reason
    assert "own number" in spoken(decision.ncco)


# --- the same over HTTP, with Vonage's payloads -------------------------------------------------------------


@pytest.mark.parametrize("settings_env", [{"INBOUND_ROUTES": "447700900001=Alice"}])
def test_answer_url_rings_the_user_for_a_phones_call_and_logs_it(client, caplog):
    with caplog.at_level(logging.INFO, logger="voice"):
        response = client.get("/voice/answer", query_string=PHONE_CALLS_APPLICATION)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert connect_of(response.get_json()).endpoint[0].user == "Alice"
    assert "NCCO request: connecting 447700900123 to app user Alice (a call to 447700900001)" in caplog.text


@pytest.mark.parametrize("settings_env", [{"CALLABLE_USERS": "Bob"}])
def test_answer_url_rings_the_called_user_for_a_post_from_the_client_sdk(client, caplog):
    with caplog.at_level(logging.INFO, logger="voice"):
        response = client.post("/voice/answer", json=ALICE_CALLS_BOB)
    assert connect_of(response.get_json()).endpoint[0].user == "Bob"
    assert "NCCO request: connecting Alice to app user Bob" in caplog.text


@pytest.mark.parametrize(
    "fields, log_line",
    [
        ({**ALICE_CALLS_BOB, "to": "Mallory"}, "refused call from Alice: CALLABLE_USERS is not set"),
        (PHONE_CALLS_APPLICATION, "refused call from 447700900123: no app user takes calls to 447700900001"),
        ({**ALICE_CALLS_BOB, "to": "+44 12"}, "refused call from Alice: '+44 12' is not a possible phone number"),
    ],
    ids=["unknown user", "unrouted number", "impossible number"],
)
def test_unknown_users_and_numbers_get_200_a_spoken_message_and_one_log_line(client, caplog, fields, log_line):
    with caplog.at_level(logging.INFO, logger="voice"):
        response = client.get("/voice/answer", query_string=fields)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert spoken(response.get_json()).startswith("Sorry, this call cannot be connected: ")
    lines = [record.getMessage() for record in caplog.records if record.name == "voice"]
    assert len(lines) == 1 and log_line in lines[0]


@pytest.mark.parametrize("settings_env", [{"INBOUND_ROUTES": "447700900001=Alice", "CALLABLE_USERS": "Bob"}])
def test_each_shape_is_recorded_with_who_was_rung(client, call_log):
    client.get("/voice/answer", query_string=PHONE_CALLS_APPLICATION)
    client.get("/voice/answer", query_string=ALICE_CALLS_BOB)
    call_log.client.flush()
    inbound = call_log.reader.get_call(PHONE_CALLS_APPLICATION["conversation_uuid"])["answers"][0]
    app_to_app = call_log.reader.get_call(ALICE_CALLS_BOB["conversation_uuid"])["answers"][0]
    assert (inbound["caller"], inbound["requested"], inbound["callee"]) == ("447700900123", "447700900001", "Alice")
    assert (app_to_app["caller"], app_to_app["callee"], app_to_app["connected"]) == ("Alice", "Bob", True)


# --- the settings, checked at start-up ----------------------------------------------------------------------


def test_routing_settings_are_read_into_the_routing():
    settings = settings_from(
        {"INBOUND_ROUTES": "+44 7700 900001=Alice, 447700900002 = Bob", "INBOUND_DEFAULT_USER": "Carol"}
    )
    assert settings.call_routing.inbound_routes == (("447700900001", "Alice"), ("447700900002", "Bob"))
    assert settings.call_routing.inbound_default_user == "Carol"
    assert settings.destination_policy.application_numbers == {"447700900001", "447700900002"}
    assert settings_from({"CALLABLE_USERS": "Bob, Carol"}).callable_users == {"Bob", "Carol"}
    assert settings_from({}).callable_users == frozenset()


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("INBOUND_ROUTES", "447700900001", "'447700900001' is not a number=user pair"),
        ("INBOUND_ROUTES", "447700900001=", "the user name for 447700900001 is empty"),
        ("INBOUND_ROUTES", "+44 12=Alice", "'+44 12' is not a possible phone number"),
        ("INBOUND_ROUTES", "07700 900001=Alice", "is in national format"),
        ("INBOUND_ROUTES", "447700900001=Alice,447700900001=Bob", "447700900001 is routed to both Alice and Bob"),
        ("INBOUND_ROUTES", ",", "it holds no number=user pair"),
        ("INBOUND_DEFAULT_USER", "447700900001", "'447700900001' is written like a phone number"),
        ("INBOUND_DEFAULT_USER", "Al=ice", "'Al=ice' is not a user name"),
        ("CALLABLE_USERS", "Bob,*", "'*' means any user, so it comes alone"),
        ("CALLABLE_USERS", "Bob,07700900000", "'07700900000' is written like a phone number"),
    ],
)
def test_bad_routing_setting_stops_start_up_with_one_line_and_an_example(variable, value, message):
    with pytest.raises(ConfigError) as error:
        settings_from({variable: value})
    text = str(error.value)
    assert text.startswith(f"{variable}: ") and message in text and "\n" not in text
    assert f"; for example {variable}=" in text
