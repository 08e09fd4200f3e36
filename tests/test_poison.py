"""Bad data at the edges: anything that parses as the JSON, form or query Vonage sends is stored and
acknowledged (as received, with the reason, when a field cannot be read), and the call log shows it."""

import json

import pytest

from conftest import CALL_LOG_TOKEN
from support.pg import database_url_for

AUTH = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return database_url_for(request.param, tmp_path)


def event(**fields) -> dict:
    return {
        "uuid": "leg-1",
        "conversation_uuid": "CON-1",
        "status": "started",
        "timestamp": "2026-11-24T10:00:00.000Z",
        "direction": "outbound",
        "from": "Alice",
        "to": "447700900000",
        **fields,
    }


def post_text(client, text: str):
    return client.post("/voice/event", data=text.encode(), content_type="application/json")


def shown(client, conversation: str = "CON-1") -> dict:
    """The conversation through the API, the page and its timeline, each of which must answer 200."""
    call = client.get(f"/api/calls/{conversation}", headers=AUTH)
    assert call.status_code == 200, call.get_data(as_text=True)
    assert client.get("/api/calls", headers=AUTH).status_code == 200
    assert client.get(f"/calls?token={CALL_LOG_TOKEN}").status_code == 302
    assert client.get("/calls").status_code == 200
    assert client.get(f"/calls/{conversation}/timeline").status_code == 200
    return call.get_json()


@pytest.mark.parametrize("field", ["uuid", "conversation_uuid", "from", "to", "status", "timestamp", "detail"])
def test_a_lone_surrogate_in_any_field_is_stored_as_sent_and_acknowledged(client, call_log, field):
    body = json.dumps(event()).replace(f'"{field}": "', f'"{field}": "x\\udfff', 1)
    assert post_text(client, body).status_code == 204
    assert post_text(client, body).status_code == 204  # a repeated delivery: stored once
    assert call_log.reader.count_events() == 1
    conversation = "CON-1" if field != "conversation_uuid" else "x\ufffdCON-1"
    (leg,) = shown(client, conversation)["legs"]
    assert leg["events"][0]["payload"] == json.loads(body)


def test_a_body_nested_too_deeply_to_read_is_stored_as_received_with_the_reason(client, call_log):
    body = '{"status": "started", "deep": ' + "[" * 10_000 + "]" * 10_000 + "}"
    assert post_text(client, body).status_code == 204
    assert post_text(client, body).status_code == 204
    assert call_log.reader.count_events() == 1


@pytest.mark.parametrize("depth", [65, 900])
def test_a_body_deeper_than_any_webhook_is_stored_as_received(client, call_log, depth):
    body = json.dumps(event(deep=json.loads("[" * depth + "]" * depth)))
    assert post_text(client, body).status_code == 204
    assert call_log.reader.count_events() == 1


def test_a_number_too_long_to_read_is_stored_as_received(client, call_log):
    assert post_text(client, json.dumps(event())[:-1] + ', "n": ' + "9" * 5000 + "}").status_code == 204
    assert call_log.reader.count_events() == 1


@pytest.mark.parametrize("duration", ["1e400", "NaN", "-5", "9" * 30, "Infinity", "12.5e3"])
def test_a_duration_that_is_no_call_length_is_left_out(client, duration):
    assert client.post("/voice/event", json=event(status="completed", duration=duration)).status_code == 204
    (leg,) = shown(client)["legs"]
    assert leg["status"] == "completed"
    assert leg["duration"] == (12500 if duration == "12.5e3" else None)


@pytest.mark.parametrize("price", ["1e999999999", "NaN", "0." + "1" * 60, "-Infinity"])
def test_a_price_that_is_no_amount_of_money_is_left_out(client, price):
    assert client.post("/voice/event", json=event(status="completed", price=price, rate=price)).status_code == 204
    call = shown(client)
    assert (call["legs"][0]["price"], call["total_price"]) == (None, None)


@pytest.mark.parametrize("field", ["uuid", "conversation_uuid", "from", "to", "direction"])
def test_a_nul_character_in_any_field_is_stored_and_shown(client, call_log, field):
    body = json.dumps(event()).replace(f'"{field}": "', f'"{field}": "\\u0000', 1)
    assert post_text(client, body).status_code == 204
    assert call_log.reader.count_events() == 1
    conversation = "CON-1" if field != "conversation_uuid" else "\ufffdCON-1"
    shown(client, conversation)
    assert client.get("/api/calls", query_string={"number": "\x00447"}, headers=AUTH).status_code == 200
    assert client.get("/api/calls/\x00", headers=AUTH).status_code == 404


def test_an_answer_request_with_a_lone_surrogate_is_answered_and_recorded(client, call_log):
    body = '{"to": "447700900000", "from_user": "Zo\\udfff", "conversation_uuid": "CON-answer"}'
    response = client.post("/voice/answer", data=body, content_type="application/json")
    assert response.status_code == 200
    assert response.get_json()[1]["endpoint"][0]["number"] == "447700900000"
    call_log.client.flush()
    assert shown(client, "CON-answer")["answers"][0]["caller"] == "Zo\ufffd"
