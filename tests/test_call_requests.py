"""The Voice API requests that act on a call in progress, built from plain values: no HTTP here."""

from dataclasses import replace

import pytest

from config import settings_from
from outbound.call_requests import (
    ACTIONS,
    ActionError,
    CallRules,
    action_request,
    call_host,
    retry_after_seconds,
    vonage_reason,
)


def rules(**variables) -> CallRules:
    settings = settings_from(variables)
    plan = settings.call_plan
    return CallRules(
        settings.destination_policy,
        replace(plan, event_url="https://example.test/voice/event/connect"),
        settings.call_routing,
    )


@pytest.mark.parametrize("action", ["hangup", "mute", "unmute", "earmuff", "unearmuff"])
def test_the_call_actions_are_one_put_naming_the_action(action):
    request = action_request("leg-1", action, {}, rules())
    assert (request.method, request.path, request.body) == ("PUT", "/v1/calls/leg-1", {"action": action})


def test_say_puts_the_text_in_the_configured_voice():
    request = action_request("leg-1", "say", {"text": " Please hold "}, rules(TTS_LANGUAGE="en-GB", TTS_STYLE="3"))
    assert (request.method, request.path) == ("PUT", "/v1/calls/leg-1/talk")
    assert request.body == {"text": "Please hold", "language": "en-GB", "style": 3}


def test_stop_say_deletes_the_talk_and_dtmf_puts_the_digits():
    stop = action_request("leg-1", "stop-say", {}, rules())
    assert (stop.method, stop.path, stop.body) == ("DELETE", "/v1/calls/leg-1/talk", None)
    keys = action_request("leg-1", "dtmf", {"digits": "12#*p3"}, rules())
    assert (keys.method, keys.path, keys.body) == ("PUT", "/v1/calls/leg-1/dtmf", {"digits": "12#*p3"})


def test_a_leg_id_is_one_path_segment_however_it_is_written():
    assert (
        action_request("../../v2/applications", "hangup", {}, rules()).path == "/v1/calls/..%2F..%2Fv2%2Fapplications"
    )


def test_transfer_to_a_number_is_the_answer_urls_connect_ncco():
    request = action_request("leg-1", "transfer", {"to": "+44 7700 900000"}, rules(VONAGE_NUMBER="447700900001"))
    destination = request.body["destination"]
    assert request.body["action"] == "transfer" and destination["type"] == "ncco"
    connect = destination["ncco"][-1]
    assert connect["endpoint"] == [{"type": "phone", "number": "447700900000"}]
    assert connect["from"] == "447700900001"
    assert connect["eventUrl"] == ["https://example.test/voice/event/connect"]
    assert request.detail == "447700900000"


def test_transfer_to_an_app_user_follows_callable_users():
    request = action_request("leg-1", "transfer", {"to": "Bob"}, rules(CALLABLE_USERS="Bob"))
    assert request.body["destination"]["ncco"][-1]["endpoint"] == [{"type": "app", "user": "Bob"}]
    with pytest.raises(ActionError, match="'Carol' is not in CALLABLE_USERS"):
        action_request("leg-1", "transfer", {"to": "Carol"}, rules(CALLABLE_USERS="Bob"))


def test_transfer_refuses_a_number_the_answer_url_refuses_with_its_reason():
    with pytest.raises(ActionError, match="PREMIUM_RATE number, blocked by BLOCKED_NUMBER_TYPES"):
        action_request("leg-1", "transfer", {"to": "449098790000"}, rules())
    with pytest.raises(ActionError, match="not in ALLOWED_COUNTRIES"):
        action_request("leg-1", "transfer", {"to": "14155550100"}, rules(ALLOWED_COUNTRIES="GB"))


@pytest.mark.parametrize(
    ("action", "fields", "says"),
    [
        ("explode", {}, "'explode' is not an action; the actions are hangup"),
        (None, {}, 'the request names no action: send {"action": ...}, one of hangup'),
        (["hangup"], {}, "the request names no action"),
        ("say", {}, "say needs 'text'"),
        ("say", {"text": 42}, "say needs 'text'"),
        ("say", {"text": "x" * 1501}, "over the limit of 1500"),
        ("dtmf", {"digits": "12a"}, "digits must be 1 to 100 of 0-9"),
        ("transfer", {"to": "  "}, "transfer needs 'to'"),
    ],
)
def test_a_bad_action_or_field_is_refused_naming_the_fix(action, fields, says):
    with pytest.raises(ActionError) as refused:
        action_request("leg-1", action, fields, rules())
    assert says in str(refused.value)


def test_every_action_is_listed_with_the_field_it_needs():
    assert ACTIONS == {
        "hangup": None,
        "mute": None,
        "unmute": None,
        "earmuff": None,
        "unearmuff": None,
        "say": "text",
        "stop-say": None,
        "dtmf": "digits",
        "transfer": "to",
    }


def test_a_call_is_acted_on_in_its_own_region():
    assert call_host("https://api-us-1.vonage.com", None, ()) == ("https://api-us-1.vonage.com", "")
    assert call_host("https://api-eu-3.nexmo.com/v1/ignored", "api.vonage.com", ()) == (
        "https://api-eu-3.nexmo.com",
        "",
    )


def test_a_call_without_region_url_goes_to_the_api_host_else_api_nexmo_com():
    assert call_host(None, "api-us.vonage.com", ()) == ("https://api-us.vonage.com", "")
    assert call_host(None, None, ()) == ("https://api.nexmo.com", "")


@pytest.mark.parametrize(
    "region_url",
    [
        "https://api.vonage.com.attacker.example",
        "http://api.nexmo.com",
        "https://127.0.0.1:8443",
        "https://u:p@api.nexmo.com",
    ],
)
def test_a_region_url_off_vonages_hosts_is_never_used(region_url):
    base, refusal = call_host(region_url, "api.nexmo.com", ())
    assert base is None
    assert "region_url is refused" in refusal and "nothing was sent" in refusal


def test_a_trusted_stand_in_is_a_region():
    assert call_host("https://127.0.0.1:8443", None, ("127.0.0.1:8443",)) == ("https://127.0.0.1:8443", "")


def test_retry_after_is_seconds_else_the_default():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) == 1.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT", 2.0) == 0.0  # a date gone by: no wait
    assert retry_after_seconds("soon", 2.0) == 2.0


def test_vonages_refusal_is_one_line_with_its_title_detail_and_parameters():
    body = '{"type": "https://developer.vonage.com/api-errors#bad-request", "title": "Bad Request", "invalid_parameters": [{"name": "destination", "reason": "is invalid"}]}'
    assert vonage_reason(400, body) == "Vonage answered 400: Bad Request; destination: is invalid"
    assert vonage_reason(404, '{"title": "Not Found", "detail": "Call leg-1 was not found"}') == (
        "Vonage answered 404: Not Found; Call leg-1 was not found"
    )
    assert vonage_reason(502, "<html>\n bad gateway </html>") == "Vonage answered 502: <html> bad gateway </html>"
    assert vonage_reason(500, "") == "Vonage answered 500"
