"""The call log: every acknowledged event stored once, leg records in step, answer decisions, the API."""

import html
import json
import logging

import pytest
from sqlalchemy import create_engine, select, text

from calllog.schema import SCHEMA_VERSION, Database, StorageError, answers, migrate, schema_version
from config import settings_from
from conftest import CALL_LOG_TOKEN, FIXTURES, SEED_EVENTS, built_app, load_fixture
from support.calls import move_table
from support.pg import database_url_for

CONVERSATION = "CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77"
AUTH = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Every test here runs on SQLite and on PostgreSQL."""
    return database_url_for(request.param, tmp_path)


def post_events(client, payloads):
    return [client.post("/voice/event", json=payload).status_code for payload in payloads]


def call_record(client, conversation=CONVERSATION):
    response = client.get(f"/api/calls/{conversation}", headers=AUTH)
    assert response.status_code == 200
    return response.get_json()


def legs_by_direction(call):
    return {leg["direction"]: leg for leg in call["legs"]}


def test_seed_events_make_one_conversation_with_two_completed_legs(client, call_log):
    assert post_events(client, [load_fixture(path) for path in SEED_EVENTS]) == [204] * 5
    call = call_record(client)
    legs = legs_by_direction(call)
    assert len(call["legs"]) == 2
    assert legs["outbound"]["status"] == "completed"
    assert (legs["outbound"]["duration"], legs["outbound"]["price"]) == (5, "0.00833333")
    assert (legs["inbound"]["status"], legs["inbound"]["duration"]) == ("completed", 15)
    assert call["total_price"] == "0.00833333"
    assert call["in_progress"] is False
    assert [event["status"] for event in legs["outbound"]["events"]] == ["started", "answered", "completed"]
    assert legs["outbound"]["events"][0]["payload"] == load_fixture(SEED_EVENTS[1])
    assert call_log.reader.count_events() == 5


def test_retried_deliveries_are_stored_once(client, call_log):
    payloads = [load_fixture(path) for path in SEED_EVENTS]
    assert post_events(client, payloads + payloads + payloads[::-1]) == [204] * 15
    assert call_log.reader.count_events() == 5
    assert len(call_record(client)["legs"][0]["events"]) + len(call_record(client)["legs"][1]["events"]) == 5


def test_out_of_order_delivery_gives_the_same_legs(client):
    post_events(client, [load_fixture(path) for path in reversed(SEED_EVENTS)])
    legs = legs_by_direction(call_record(client))
    assert legs["outbound"]["status"] == "completed" and legs["outbound"]["price"] == "0.00833333"
    assert legs["inbound"]["status"] == "completed"


def test_late_ringing_after_completed_does_not_regress_the_leg(client):
    completed = load_fixture(FIXTURES / "events" / "completed.json")
    ringing = dict(load_fixture(FIXTURES / "events" / "ringing.json"), timestamp="2026-11-24T09:02:00.000Z")
    post_events(client, [completed, ringing])
    (leg,) = call_record(client, completed["conversation_uuid"])["legs"]
    assert leg["status"] == "completed"
    assert len(leg["events"]) == 2


def test_call_in_progress_is_marked(client):
    post_events(client, [load_fixture(SEED_EVENTS[0])])
    assert call_record(client)["in_progress"] is True


def test_every_status_fixture_and_unknown_statuses_are_stored(client, call_log):
    fixtures = sorted((FIXTURES / "events").glob("*.json"))
    unknown = {
        "status": "teleported",
        "uuid": "leg-x",
        "conversation_uuid": "CON-x",
        "timestamp": "2026-11-24T10:00:00Z",
    }
    assert post_events(client, [load_fixture(path) for path in fixtures] + [unknown]) == [204] * (len(fixtures) + 1)
    assert call_log.reader.count_events() == len(fixtures) + 1
    assert call_record(client, "CON-x")["legs"][0]["status"] == "teleported"


def test_event_without_conversation_uuid_is_stored(client, call_log):
    assert post_events(client, [{"status": "started", "uuid": "lonely", "timestamp": "2026-11-24T10:00:00Z"}]) == [204]
    assert call_log.reader.count_events() == 1


def test_storage_failure_answers_503_and_loses_nothing_acknowledged(client, call_log, caplog):
    payloads = [load_fixture(path) for path in SEED_EVENTS]
    acknowledged = []
    for index, payload in enumerate(payloads):
        failing = index in (2, 3)
        if index == 2:
            move_table(call_log, "events", "events_away")
        if index == 4:
            move_table(call_log, "events_away", "events")
        status = client.post("/voice/event", json=payload).status_code
        assert status == (503 if failing else 204)
        if status == 204:
            acknowledged.append(payload)
    assert "event not stored, answering 503" in caplog.text
    stored = [event["payload"] for leg in call_record(client)["legs"] for event in leg["events"]]

    def canonical(payloads):
        return sorted(json.dumps(payload, sort_keys=True) for payload in payloads)

    assert canonical(stored) == canonical(acknowledged)
    # Vonage retries the refused ones, and then they are stored too.
    assert post_events(client, payloads[2:4]) == [204, 204]
    assert call_log.reader.count_events() == 5


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_events_are_stored_after_the_writers_connection_is_lost(client, call_log, database_url):
    """The database ends the writer's connection (a restart, a network cut); the next events are stored.

    PostgreSQL only: nothing outside a process can cut its connection to an SQLite file.
    """
    payloads = [load_fixture(path) for path in SEED_EVENTS]
    assert post_events(client, payloads[:2]) == [204, 204]
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    engine.dispose()
    assert post_events(client, payloads[2:]) == [204, 204, 204]
    assert call_log.reader.count_events() == 5


def test_answer_decisions_are_recorded_with_their_conversation(client, call_log):
    client.get(
        "/voice/answer", query_string={"to": "447700900000", "from_user": "Alice", "conversation_uuid": CONVERSATION}
    )
    client.get(
        "/voice/answer", query_string={"to": "+44 909 879 0000", "from_user": "Bob", "conversation_uuid": "CON-refused"}
    )
    call_log.client.flush()
    (connected,) = call_record(client)["answers"]
    assert connected["connected"] is True and connected["callee"] == "447700900000" and connected["caller"] == "Alice"
    (refused,) = call_record(client, "CON-refused")["answers"]
    assert refused["connected"] is False and "PREMIUM_RATE" in refused["reason"]
    assert refused["requested"] == "+44 909 879 0000"


def all_answers(call_log) -> list[dict]:
    with call_log.database.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(answers).order_by(answers.c.id))]


def test_failing_to_record_an_answer_does_not_change_the_ncco_and_keeps_it_until_stored(client, call_log, caplog):
    expected = client.get("/voice/answer?to=447700900000&conversation_uuid=CON-kept-1").get_json()
    call_log.client.flush()

    move_table(call_log, "answers", "answers_away")
    assert client.get("/voice/answer?to=447700900000&conversation_uuid=CON-kept-2").get_json() == expected
    with pytest.raises(StorageError, match="answers"):
        call_log.client.flush()
    assert call_log.client.answers_waiting() == 1
    move_table(call_log, "answers_away", "answers")

    call_log.client.flush()
    assert call_log.client.answers_waiting() == 0
    assert [answer["conversation_uuid"] for answer in all_answers(call_log)] == ["CON-kept-1", "CON-kept-2"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_answer_keeps_answering_when_the_database_is_unreachable(tmp_path, database_url):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the database's folder should be")
    with built_app({"DATABASE_URL": f"sqlite:///{blocked / 'calls.db'}"}) as app:
        client = app.test_client()
        assert client.get("/voice/answer?to=447700900000").get_json()[1]["action"] == "connect"
        assert client.post("/voice/event", json={"status": "started"}).status_code == 503
        health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["status"] == "degraded"
    assert health.get_json()["parts"]["storage"]["status"] == "error"


def test_call_log_needs_the_token(client):
    assert client.get("/api/calls").status_code == 401
    assert client.get("/api/calls", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert "token" in client.get("/api/calls?token=wrong").get_json()["error"]
    assert client.get(f"/api/calls?token={CALL_LOG_TOKEN}").status_code == 401  # the page's link only
    assert client.get("/api/calls", headers=AUTH).status_code == 200


def test_unknown_conversation_is_404(client):
    assert client.get("/api/calls/CON-nope", headers=AUTH).status_code == 404


def seed_conversations(client, count):
    for index in range(count):
        client.post(
            "/voice/event",
            json={
                "status": "completed" if index % 2 else "busy",
                "uuid": f"leg-{index}",
                "conversation_uuid": f"CON-{index:03d}",
                "from": "447700900001",
                "to": f"4477009{index:05d}",
                "direction": "outbound",
                "timestamp": f"2026-11-24T10:00:{index:02d}.000Z",
                "price": "0.01",
            },
        )


def test_calls_are_listed_newest_first_and_paginated(client):
    seed_conversations(client, 5)
    first = client.get("/api/calls?limit=2", headers=AUTH).get_json()
    assert [call["conversation_uuid"] for call in first["calls"]] == ["CON-004", "CON-003"]
    second = client.get(f"/api/calls?limit=2&cursor={first['next']}", headers=AUTH).get_json()
    third = client.get(f"/api/calls?limit=2&cursor={second['next']}", headers=AUTH).get_json()
    assert [call["conversation_uuid"] for call in second["calls"] + third["calls"]] == ["CON-002", "CON-001", "CON-000"]
    assert third["next"] is None
    leg = first["calls"][0]["legs"][0]
    assert set(leg) >= {
        "uuid",
        "direction",
        "from",
        "to",
        "status",
        "duration",
        "rate",
        "price",
        "network",
        "start_time",
        "end_time",
    }


def test_calls_filter_by_status_and_number(client):
    seed_conversations(client, 4)
    busy = client.get("/api/calls?status=busy", headers=AUTH).get_json()["calls"]
    assert [call["conversation_uuid"] for call in busy] == ["CON-002", "CON-000"]
    by_number = client.get("/api/calls", query_string={"number": "+44 7700 900003"}, headers=AUTH).get_json()["calls"]
    assert [call["conversation_uuid"] for call in by_number] == ["CON-003"]


def test_refused_filter_lists_refused_answers(client, call_log):
    client.get("/voice/answer", query_string={"to": "+44 909 879 0000", "conversation_uuid": "CON-refused"})
    client.get("/voice/answer", query_string={"to": "447700900000", "conversation_uuid": "CON-ok"})
    call_log.client.flush()
    refused = client.get("/api/calls?status=refused", headers=AUTH).get_json()["calls"]
    assert [call["conversation_uuid"] for call in refused] == ["CON-refused"]


def test_status_filters_match_the_calls_outcome(client):
    """A busy leg beside one still ringing is a call in progress, not a busy one; a told-why is no refusal."""

    def event(conversation, leg, status):
        body = {
            "uuid": leg,
            "conversation_uuid": conversation,
            "status": status,
            "timestamp": f"2026-11-24T10:00:0{len(leg)}Z",
        }
        assert client.post("/voice/event", json=body).status_code == 204

    event("CON-mixed", "leg-a", "busy")
    event("CON-mixed", "leg-bb", "ringing")
    event("CON-ended", "leg-a2", "busy")
    told = {"uuid": "leg-t", "conversation_uuid": "CON-told", "status": "busy", "to": "447700900000"}
    assert client.post("/voice/event/connect", json=told).status_code == 200
    client.application.extensions["call_log"].client.flush()

    def listed(status):
        calls = client.get(f"/api/calls?status={status}", headers=AUTH).get_json()["calls"]
        return sorted(call["conversation_uuid"] for call in calls)

    assert listed("busy") == ["CON-ended", "CON-told"]
    assert listed("in_progress") == ["CON-mixed"]
    assert listed("ringing") == ["CON-mixed"]
    assert listed("refused") == []


@pytest.mark.parametrize("query", ["limit=0", "limit=500", "limit=x", "cursor=garbage"])
def test_bad_paging_gets_400_saying_what_to_send(client, query):
    response = client.get(f"/api/calls?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["error"]


STATUS_ERROR = (
    "status must be one of: in_progress, refused, started, ringing, answered, disconnected, completed, busy, "
    "cancelled, unanswered, rejected, failed, timeout; e.g. ?status=completed"
)


def test_an_unknown_status_filter_gets_400_listing_the_valid_statuses(client):
    seed_conversations(client, 2)
    response = client.get("/api/calls?status=bogus", headers=AUTH)
    assert response.status_code == 400
    assert response.get_json() == {"error": STATUS_ERROR}


def test_the_call_log_page_shows_the_same_list_for_an_unknown_status(client):
    response = client.get("/calls?status=bogus", headers=AUTH)
    assert response.status_code == 400
    assert html.escape(STATUS_ERROR, quote=True) in response.get_data(as_text=True)


def test_a_limit_under_one_is_refused_by_the_query_itself(call_log):
    with pytest.raises(ValueError, match="limit must be at least 1, not 0"):
        call_log.reader.list_calls(limit=0)


def test_flask_calls_prints_the_call_log(client, runner):
    post_events(client, [load_fixture(path) for path in SEED_EVENTS])
    table = runner.invoke(args=["calls"])
    assert table.exit_code == 0
    assert CONVERSATION in table.output and "0.00833333" in table.output
    as_json = runner.invoke(args=["calls", "--json"])
    assert json.loads(as_json.output)[0]["conversation_uuid"] == CONVERSATION


def test_flask_calls_on_an_empty_log_says_how_to_start(runner):
    assert "No calls yet" in runner.invoke(args=["calls"]).output


def test_schema_is_versioned_and_migration_is_idempotent(call_log):
    engine = call_log.database.engine
    assert migrate(engine) == SCHEMA_VERSION
    assert migrate(engine) == SCHEMA_VERSION
    with engine.connect() as connection:
        assert connection.execute(select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]


def test_a_database_from_a_newer_release_is_refused(database_url):
    database = Database(database_url)
    database.ensure_schema()
    with database.engine.begin() as connection:
        connection.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    database.close()
    newer = Database(database_url)
    with pytest.raises(StorageError, match="newer than this server"):
        newer.ensure_schema()
    newer.close()


def test_sqlite_runs_in_wal_mode(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'calls.db'}")
    database.ensure_schema()
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    database.close()


def test_duplicate_delivery_is_logged_without_repeating_the_block(client, caplog):
    caplog.set_level(logging.INFO, logger="voice")
    payload = load_fixture(SEED_EVENTS[0])
    post_events(client, [payload, payload])
    records = [record for record in caplog.records if getattr(record, "event", None)]
    assert [getattr(record, "duplicate", False) for record in records] == [False, True]
    assert "already stored" in records[1].getMessage()


def test_a_version_1_database_is_migrated_in_place_and_keeps_its_events(database_url):
    with built_app({"DATABASE_URL": database_url, "CALL_LOG_TOKEN": CALL_LOG_TOKEN}) as app:
        app.test_client().post("/voice/event", json=load_fixture(SEED_EVENTS[0]))
    # As a server of version 1 left it: no problem column, schema version 1.
    database = Database(database_url)
    with database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE events DROP COLUMN problem"))
        connection.execute(schema_version.update().values(version=1))
    database.close()
    with built_app({"DATABASE_URL": database_url, "CALL_LOG_TOKEN": CALL_LOG_TOKEN}) as app:
        client = app.test_client()
        deep = '{"status": "started", "deep": ' + "[" * 100 + "]" * 100 + "}"
        assert client.post("/voice/event", data=deep, content_type="application/json").status_code == 204
        assert app.extensions["call_log"].reader.count_events() == 2
        with app.extensions["call_log"].database.engine.connect() as connection:
            assert connection.execute(select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]


def test_flask_calls_says_in_one_line_when_the_call_log_cannot_be_read(runner, call_log):
    move_table(call_log, "conversations", "conversations_away")
    result = runner.invoke(args=["calls"])
    move_table(call_log, "conversations_away", "conversations")
    assert result.exit_code != 0
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: the call log is unavailable: ")
    assert "Traceback" not in result.output


def test_the_writer_waits_for_the_disk_on_each_commit_and_the_background_jobs_do_not(tmp_path):
    """An acknowledged event is on disk (synchronous=FULL); the jobs' own state (claims, outcomes) need not be: a
    power cut that undoes one makes the job run again, and their commits then do not queue behind the disk."""
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    for sync_each_commit, expected in ((True, 2), (False, 1)):  # SQLite: 2 is FULL, 1 is NORMAL
        database = Database(url, sync_each_commit=sync_each_commit)
        with database.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == expected
        database.close()


def test_the_background_jobs_open_the_call_log_without_waiting_for_the_disk():
    from outbound import background_jobs

    jobs = background_jobs(settings_from({"DATABASE_URL": "sqlite:///:memory:"}))
    try:
        (recordings_job,) = jobs.jobs
        assert recordings_job.recordings.database.engine.url.database == ":memory:"
        with recordings_job.recordings.database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    finally:
        jobs.stop()
