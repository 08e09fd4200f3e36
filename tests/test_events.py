"""/voice/event over HTTP: every well-formed event is accepted and logged; bad input gets a clear 400/413."""

import json
import logging
from datetime import UTC

import pytest

from conftest import CALL_LOG_TOKEN, SEED_EVENTS, STATUS_EVENTS, load_fixture
from events import event_kind, leg_parties, leg_uuid
from runtime.logs import JsonFormatter, PrettyFormatter


@pytest.mark.parametrize("path", SEED_EVENTS + STATUS_EVENTS, ids=lambda path: path.stem)
def test_every_known_event_is_accepted_as_json_post(client, path):
    response = client.post("/voice/event", json=load_fixture(path))
    assert response.status_code == 204


@pytest.mark.parametrize("path", SEED_EVENTS, ids=lambda path: path.stem)
def test_event_sent_by_get_is_accepted(client, path):
    payload = {key: value for key, value in load_fixture(path).items() if isinstance(value, str)}
    assert client.get("/voice/event", query_string=payload).status_code == 204


def test_form_encoded_event_is_accepted(client, caplog):
    with caplog.at_level(logging.INFO, logger="voice"):
        response = client.post("/voice/event", data={"status": "ringing", "uuid": "abc"})
    assert response.status_code == 204
    assert caplog.records[-1].payload == {"status": "ringing", "uuid": "abc"}


def test_unknown_status_and_future_fields_are_accepted(client):
    response = client.post("/voice/event", json={"status": "teleported", "uuid": "abc", "quantum": {"x": 1}})
    assert response.status_code == 204


def test_json_body_without_content_type_is_read(client, caplog):
    with caplog.at_level(logging.INFO, logger="voice"):
        response = client.post("/voice/event", data=b'{"status": "answered", "uuid": "u1"}', content_type="")
    assert response.status_code == 204
    assert caplog.records[-1].payload["status"] == "answered"


@pytest.mark.parametrize(
    "body, content_type, problem",
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2, 3]", "application/json", "JSON array, not an object"),
        (b'"started"', "application/json", "JSON string, not an object"),
        (b"{}", "application/json", "empty JSON object"),
        (b"status=started", "", "no Content-Type and is not JSON"),
        (b"<xml/>", "application/xml", "Content-Type application/xml is not supported"),
        (b"\xff\xfe\x00", "application/json", "not UTF-8"),
    ],
)
def test_malformed_event_gets_400_naming_the_problem(client, body, content_type, problem):
    response = client.post("/voice/event", data=body, content_type=content_type)
    assert response.status_code == 400
    assert problem in response.get_json()["error"]
    assert "Content-Type: application/json" in response.get_json()["error"]


def test_get_event_without_fields_gets_400(client):
    response = client.get("/voice/event")
    assert response.status_code == 400
    assert "no fields" in response.get_json()["error"]


def test_event_over_64_kib_gets_413(client):
    body = json.dumps({"status": "started", "padding": "x" * (64 * 1024)})
    response = client.post("/voice/event", data=body, content_type="application/json")
    assert response.status_code == 413
    assert "64" in response.get_json()["error"] or "65536" in response.get_json()["error"]


def test_event_whose_body_ends_early_gets_400_and_is_not_stored(client, call_log):
    body = json.dumps({"status": "started", "uuid": "leg-cut", "timestamp": "2026-11-24T10:00:00.000Z"}).encode()
    response = client.post(
        "/voice/event",
        data=body,
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(len(body) + 10)},
    )
    assert response.status_code == 400
    assert f"ended after {len(body)} of the {len(body) + 10} bytes" in response.get_json()["error"]
    assert call_log.reader.count_events() == 0


def test_multipart_form_event_is_accepted(client, call_log):
    response = client.post(
        "/voice/event", data={"status": "started", "uuid": "leg-form"}, content_type="multipart/form-data"
    )
    assert response.status_code == 204
    assert call_log.reader.count_events() == 1


def test_event_just_under_the_limit_is_accepted(client):
    body = json.dumps({"status": "started", "padding": "x" * (60 * 1024)})
    assert client.post("/voice/event", data=body, content_type="application/json").status_code == 204


def test_unknown_route_gets_json_404_listing_routes(client):
    response = client.get("/voice/answers")
    assert response.status_code == 404
    assert "/voice/answer" in response.get_json()["error"]


def test_wrong_method_gets_json_405(client):
    response = client.delete("/voice/event")
    assert response.status_code == 405
    assert "GET or POST" in response.get_json()["error"]


def test_a_flask_routes_errors_are_json_with_their_own_headers(client):
    """Flask's routes answer every error in the one JSON shape, and keep what the error's status needs said: a 405
    names the methods (Allow), and a 404 a route raises keeps its own message instead of the route list."""
    wrong_method = client.delete("/health")
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert wrong_method.content_type == "application/json"
    assert wrong_method.get_json() == {"error": "DELETE is not supported on /health; use GET"}
    missing = client.get("/api/calls/no-such-call", headers={"Authorization": f"Bearer {CALL_LOG_TOKEN}"})
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "no conversation no-such-call in the call log"}


@pytest.mark.parametrize(
    "name, kind",
    [
        ("started", "started"),
        ("input", "input"),
        ("record", "record"),
        ("transfer", "transfer"),
        ("error", "error"),
        ("human", "human"),
    ],
)
def test_event_kind_names_statuses_and_other_event_kinds(name, kind):
    from conftest import FIXTURES

    assert event_kind(load_fixture(FIXTURES / "events" / f"{name}.json")) == kind


def test_human_and_machine_events_name_their_leg_call_uuid():
    assert leg_uuid({"call_uuid": "leg-1", "status": "machine"}) == "leg-1"
    assert leg_uuid({"uuid": "leg-2"}) == "leg-2"
    assert leg_uuid({"status": "x"}) is None


def test_pretty_log_shows_each_event_as_a_readable_block(client, caplog):
    payload = load_fixture(SEED_EVENTS[3])
    with caplog.at_level(logging.INFO, logger="voice"):
        client.post("/voice/event", json=payload)
    text = PrettyFormatter().format(caplog.records[-1])
    headline, *block = text.splitlines()
    assert headline.endswith("VOICE EVENT completed (outbound) leg 8aa86e22-8d45-4201-b8d8-3dcd76e76429 [unverified]")
    assert block[-1] == "---"
    assert json.loads("\n".join(block[:-1])) == payload


def test_json_log_is_one_line_with_payload_and_time_received(client, caplog):
    payload = load_fixture(SEED_EVENTS[0])
    with caplog.at_level(logging.INFO, logger="voice"):
        client.post("/voice/event", json=payload)
    line = JsonFormatter().format(caplog.records[-1])
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["payload"] == payload
    assert entry["event"] == "started"
    assert entry["received_at"].endswith("Z")


def test_health_reports_version_and_parts(client):
    body = client.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["version"]
    assert body["parts"]["answer"]["caller_id"] == "randomFromNumber"
    assert body["parts"]["events"]["status"] == "ok"
    assert body["parts"]["writer"] == {"status": "ok", "answers_waiting": 0}


def test_health_reports_a_writer_that_does_not_answer(client, call_log, tmp_path):
    import socket

    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # takes connections, never replies: a hung writer
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen()
    working, call_log.client.socket_path = call_log.client.socket_path, str(tmp_path / "silent.sock")
    try:
        body = client.get("/health").get_json()
    finally:
        call_log.client.socket_path = working
        silent.close()
    assert body["status"] == "degraded"
    assert body["parts"]["writer"]["status"] == "unavailable"
    assert body["parts"]["writer"]["error"] == "the call-log writer did not answer within 1 s"


@pytest.mark.parametrize("log_format", ["pretty", "json"])
def test_logged_events_reach_standard_output_before_the_process_exits(tmp_path, log_format):
    import subprocess
    import sys

    from conftest import ROOT

    script = (
        "from app import create_app\n"
        f"app = create_app({{'DATABASE_URL': 'sqlite:///{tmp_path}/calls.db', 'LOG_FORMAT': '{log_format}', "
        f"'INSTANCE_PATH': '{tmp_path}'}})\n"
        "for n in range(3):\n"
        "    app.test_client().post('/voice/event', json={'status': 'started', 'uuid': f'leg-{n}', 'timestamp': str(n)})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    if log_format == "pretty":
        assert result.stdout.count("VOICE EVENT started") == 3
        assert '"uuid": "leg-2"' in result.stdout
    else:
        entries = [json.loads(line) for line in result.stdout.splitlines()]
        assert [entry["payload"]["uuid"] for entry in entries if entry.get("event")] == ["leg-0", "leg-1", "leg-2"]


@pytest.mark.parametrize(
    "epoch, text",
    [
        (1615372581.285, "2021-03-10T10:36:21.285Z"),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1615372581.9999, "2021-03-10T10:36:21.999Z"),
    ],
)
def test_utc_timestamps_are_written_as_vonage_writes_them(epoch, text):
    from events import utc_timestamp

    assert utc_timestamp(epoch) == text


def test_utc_timestamps_agree_with_datetime():
    import random
    from datetime import datetime

    from events import utc_timestamp

    chooser = random.Random(7)
    for _ in range(5000):
        epoch = round(chooser.uniform(1.6e9, 1.8e9), chooser.choice([0, 3, 6, 9]))
        moment = datetime.fromtimestamp(epoch, tz=UTC)
        assert utc_timestamp(epoch) == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@pytest.mark.parametrize(
    "direction, caller, callee, parties",
    [
        # The app user's own leg: Vonage names the user in `to`; the user is the one calling.
        ("inbound", None, "Alice", ("Alice", None)),
        ("inbound", "", "Alice", ("Alice", None)),
        # A phone calling the application's number, and the leg that rings a phone or an app user.
        ("inbound", "447700900123", "447700900001", ("447700900123", "447700900001")),
        ("outbound", "Alice", "447700900000", ("Alice", "447700900000")),
        ("outbound", "447700900001", "Bob", ("447700900001", "Bob")),
        # Vonage's word for a caller it cannot name reads as no caller.
        ("outbound", "Unknown", "447700900000", (None, "447700900000")),
        ("inbound", None, "447700900001", (None, "447700900001")),
    ],
)
def test_a_legs_parties_read_caller_first(direction, caller, callee, parties):
    assert leg_parties(direction, caller, callee) == parties
