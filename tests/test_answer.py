"""/voice/answer and /voice/fallback over HTTP: always 200 JSON with a valid NCCO."""

import json
import logging

import pytest
from vonage_voice.models import Connect, Talk

from vonage_helper.ncco_models import parse_ncco

CLIENT_SDK_ANSWER = {
    "to": "447700900000",
    "from_user": "Alice",
    "endpoint_type": "app",
    "uuid": "2da93da3-bcac-47ee-b48e-4a18fae7db08",
    "conversation_uuid": "CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77",
    "region_url": "https://api-eu-1.vonage.com",
}


def ncco_of(response):
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    ncco = response.get_json()
    parse_ncco(ncco)
    return ncco


def connected_number(ncco):
    actions = parse_ncco(ncco)
    connect = [action for action in actions if isinstance(action, Connect)]
    return connect[0].endpoint[0].number if connect else None


def spoken(ncco):
    return " ".join(action.text for action in parse_ncco(ncco) if isinstance(action, Talk))


def test_get_answer_connects_the_tutorial_number(client):
    ncco = ncco_of(client.get("/voice/answer", query_string=CLIENT_SDK_ANSWER))
    assert connected_number(ncco) == "447700900000"
    assert spoken(ncco) == "Please wait while we connect you."


def test_post_json_answer_connects(client):
    ncco = ncco_of(client.post("/voice/answer", json=CLIENT_SDK_ANSWER))
    assert connected_number(ncco) == "447700900000"


def test_post_form_answer_connects(client):
    ncco = ncco_of(client.post("/voice/answer", data={"to": "+44 7700 900000"}))
    assert connected_number(ncco) == "447700900000"


def test_callee_from_custom_data_json_string_in_query(client):
    query = {"from_user": "Alice", "custom_data": json.dumps({"to": "447700900000"})}
    assert connected_number(ncco_of(client.get("/voice/answer", query_string=query))) == "447700900000"


def test_multipart_form_answer_connects(client):
    response = client.post("/voice/answer", data={"to": "447700900000"}, content_type="multipart/form-data")
    assert connected_number(ncco_of(response)) == "447700900000"


def test_callee_from_custom_data_object_in_json_body(client):
    body = {"from_user": "Alice", "custom_data": {"to": "+44 7700 900000", "note": "hi"}}
    assert connected_number(ncco_of(client.post("/voice/answer", json=body))) == "447700900000"


@pytest.mark.parametrize("settings_env", [{"VONAGE_NUMBER": "+44 7700 900001"}])
def test_caller_id_comes_from_vonage_number(client):
    ncco = ncco_of(client.get("/voice/answer?to=447700900000"))
    assert ncco[1]["from"] == "447700900001"
    assert "randomFromNumber" not in ncco[1]


def test_without_vonage_number_vonage_picks_a_number(client):
    ncco = ncco_of(client.get("/voice/answer?to=447700900000"))
    assert ncco[1]["randomFromNumber"] is True


@pytest.mark.parametrize("settings_env", [{"DEFAULT_REGION": "GB"}])
def test_national_format_with_default_region(client):
    assert connected_number(ncco_of(client.get("/voice/answer", query_string={"to": "07700 900000"}))) == "447700900000"


@pytest.mark.parametrize(
    "settings_env",
    [{"GREETING": "Connecting you now.", "TTS_LANGUAGE": "en-GB", "RINGING_TIMEOUT": "25", "CALL_LIMIT": "900"}],
)
def test_call_settings_shape_the_ncco(client):
    ncco = ncco_of(client.get("/voice/answer?to=447700900000"))
    assert ncco[0] == {"action": "talk", "text": "Connecting you now.", "language": "en-GB"}
    assert (ncco[1]["timeout"], ncco[1]["limit"]) == (25, 900)


def test_answer_refuses_premium_rate_number_with_spoken_error(client, caplog):
    with caplog.at_level(logging.WARNING, logger="voice"):
        ncco = ncco_of(client.get("/voice/answer", query_string={"to": "+44 909 879 0000"}))
    assert connected_number(ncco) is None
    assert spoken(ncco) == "Sorry, this call cannot be connected: calls to premium rate numbers are not allowed."
    assert any("PREMIUM_RATE" in record.getMessage() for record in caplog.records)


def test_missing_callee_gets_spoken_error(client):
    ncco = ncco_of(client.get("/voice/answer"))
    assert connected_number(ncco) is None
    assert "no number to call was given" in spoken(ncco)


@pytest.mark.parametrize("settings_env", [{"ALLOWED_COUNTRIES": "GB"}])
def test_country_not_allowed_gets_spoken_error(client):
    ncco = ncco_of(client.get("/voice/answer", query_string={"to": "+1 201 555 0123"}))
    assert connected_number(ncco) is None
    assert "country" in spoken(ncco)


@pytest.mark.parametrize("settings_env", [{"VONAGE_NUMBER": "447700900001"}])
def test_inbound_call_to_our_number_with_no_user_to_take_it_hears_why_and_is_not_bridged_back(client):
    ncco = ncco_of(client.get("/voice/answer", query_string={"from": "447700900123", "to": "447700900001"}))
    assert connected_number(ncco) is None
    assert spoken(ncco) == "Sorry, this call cannot be connected: nobody is available to take calls to this number."


@pytest.mark.parametrize("settings_env", [{"VONAGE_NUMBER": "447700900001", "INBOUND_DEFAULT_USER": "Alice"}])
def test_client_sdk_call_to_our_own_number_is_still_refused(client):
    ncco = ncco_of(client.get("/voice/answer", query_string={"from_user": "Bob", "to": "+44 7700 900001"}))
    assert connected_number(ncco) is None
    assert "own number" in spoken(ncco)


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "text/plain"),
    ],
)
def test_unreadable_post_gets_spoken_error_not_4xx(client, body, content_type):
    ncco = ncco_of(client.post("/voice/answer", data=body, content_type=content_type))
    assert "could not be read" in spoken(ncco)


def test_oversized_answer_gets_spoken_error_not_413(client):
    ncco = ncco_of(client.post("/voice/answer", data=b"x" * (65 * 1024), content_type="application/json"))
    assert "could not be read" in spoken(ncco)


def test_answer_whose_body_ends_early_gets_spoken_error_not_400(client):
    body = json.dumps({"to": "447700900000"}).encode()
    response = client.post(
        "/voice/answer",
        data=body,
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(len(body) + 10)},
    )
    assert "could not be read" in spoken(ncco_of(response))


def test_non_text_callee_gets_spoken_error(client):
    ncco = ncco_of(client.post("/voice/answer", json={"to": {"type": "phone"}}))
    assert "could not be read" in spoken(ncco)


def test_fallback_answers_the_same_way_and_logs_vonages_reason(client, caplog):
    body = dict(
        CLIENT_SDK_ANSWER,
        reason="Connection timeout",
        original_request={"url": "https://x/voice/answer", "type": "GET"},
    )
    with caplog.at_level(logging.INFO, logger="voice"):
        ncco = ncco_of(client.post("/voice/fallback", json=body))
    assert connected_number(ncco) == "447700900000"
    assert any("Connection timeout" in record.getMessage() for record in caplog.records)


def test_answer_log_line_names_caller_and_callee(client, caplog):
    with caplog.at_level(logging.INFO, logger="voice"):
        client.get("/voice/answer", query_string=CLIENT_SDK_ANSWER)
    assert "NCCO request: connecting Alice to 447700900000" in caplog.text


def test_unexpected_failure_still_answers_with_an_ncco(app, client, monkeypatch):
    from edge import voice

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(voice, "decide_answer", broken)
    ncco = ncco_of(client.get("/voice/answer?to=447700900000"))
    assert "could not be read" in spoken(ncco)


def test_flask_ncco_shows_the_decision_and_exits_nonzero_when_refused(runner):
    refused = runner.invoke(args=["ncco", "+44 909 879 0000"])
    assert refused.exit_code == 1
    assert "PREMIUM_RATE" in refused.output
    allowed = runner.invoke(args=["ncco", "+44 7700 900000"])
    assert allowed.exit_code == 0
    assert "connect: +44 7700 900000 -> 447700900000" in allowed.output


def test_flask_ncco_prints_the_ncco_the_answer_url_returns(runner, client):
    """The same NCCO, the connect's eventUrl and eventType included, as /voice/answer for a request that reached
    this server at its own address."""
    printed = runner.invoke(args=["ncco", "447700900000"])
    assert printed.exit_code == 0, printed.output
    ncco = json.loads(printed.output.split("\n", 1)[1])
    answered = ncco_of(client.get("/voice/answer?to=447700900000", base_url="http://127.0.0.1:3000"))
    assert ncco == answered
    assert ncco[1]["eventType"] == "synchronous"
    assert ncco[1]["eventUrl"] == ["http://127.0.0.1:3000/voice/event/connect"]
