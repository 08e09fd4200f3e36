"""The call log's side of call control: the answer's region_url kept, the legs in progress, action rows in the
call's timeline, migration to schema 6, and retention removing a call's actions with it."""

from sqlalchemy import inspect, select, text

from calllog.call_actions import ACCEPTED, NOT_SENT, action_row, find_leg, live_legs, record_action
from calllog.retention import prune
from calllog.schema import SCHEMA_VERSION, Database, call_actions, schema_version
from conftest import CALL_LOG_TOKEN, built_app

BEARER = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}


def answered_call(client, call_log, leg="leg-1", conversation="CON-1", region_url="https://api-us-1.vonage.com"):
    query = {"from_user": "Alice", "to": "447700900000", "uuid": leg, "conversation_uuid": conversation}
    if region_url:
        query["region_url"] = region_url
    assert client.get("/voice/answer", query_string=query).status_code == 200
    call_log.client.flush()
    for status in ("started", "answered"):
        event = {
            "uuid": leg,
            "conversation_uuid": conversation,
            "status": status,
            "direction": "inbound",
            "to": "Alice",
        }
        event["timestamp"] = f"2026-12-07T10:00:0{1 if status == 'started' else 2}.000Z"
        assert client.post("/voice/event", json=event).status_code == 204


def test_a_leg_in_progress_is_found_with_its_answers_region_url(client, call_log):
    answered_call(client, call_log)
    leg = find_leg(call_log.database, "leg-1")
    assert (leg.conversation_uuid, leg.status, leg.region_url) == ("CON-1", "answered", "https://api-us-1.vonage.com")
    assert leg.in_progress and leg.since == "2026-12-07T10:00:01.000Z"
    assert [found.uuid for found in live_legs(call_log.database)] == ["leg-1"]
    assert find_leg(call_log.database, "leg-\x00nul") is None


def test_a_call_whose_answer_had_no_region_url_has_none(client, call_log):
    answered_call(client, call_log, region_url=None)
    assert find_leg(call_log.database, "leg-1").region_url is None


def test_each_action_is_in_the_calls_timeline_and_marks_it_changed(client, call_log):
    answered_call(client, call_log)
    before = client.get("/api/calls/CON-1", headers=BEARER).json["updated_at"]
    leg = find_leg(call_log.database, "leg-1")
    record_action(
        call_log.database,
        action_row(leg, "leg-1", "say", "Hello", "2099-01-01T00:00:00.000Z", "10.0.0.9", ACCEPTED, 200, "ok"),
    )
    record_action(
        call_log.database,
        action_row(leg, "leg-1", "explode", None, "2099-01-01T00:00:01.000Z", "command line", NOT_SENT, None, "no"),
    )
    call = client.get("/api/calls/CON-1", headers=BEARER).json
    assert [(item["action"], item["detail"], item["requested_by"], item["outcome"]) for item in call["actions"]] == [
        ("say", "Hello", "10.0.0.9", "accepted"),
        ("explode", None, "command line", "not sent"),
    ]
    assert call["updated_at"] == "2099-01-01T00:00:01.000Z" != before
    listed = client.get("/api/calls", headers=BEARER).json["calls"][0]
    assert [item["action"] for item in listed["actions"]] == ["say", "explode"]


def test_retention_removes_a_calls_actions_with_it(client, call_log):
    answered_call(client, call_log)
    leg = find_leg(call_log.database, "leg-1")
    record_action(
        call_log.database, action_row(leg, "leg-1", "hangup", None, "2026-12-07T10:00:03.000Z", "x", ACCEPTED)
    )
    prune(call_log.database, "2100-01-01T00:00:00.000Z")
    with call_log.database.connect() as connection:
        assert connection.execute(select(call_actions)).all() == []


def test_a_version_5_database_gains_region_url_and_call_actions(database_url):
    with built_app({"DATABASE_URL": database_url, "CALL_LOG_TOKEN": CALL_LOG_TOKEN}):
        pass
    # As a server of version 5 left it.
    database = Database(database_url)
    with database.engine.begin() as connection:
        connection.execute(text("DROP TABLE call_actions"))
        connection.execute(text("ALTER TABLE answers DROP COLUMN region_url"))
        connection.execute(text("DROP TABLE recordings"))
        connection.execute(text("DROP TABLE deliveries"))
        connection.execute(text("DROP TABLE forward_endpoints"))
        connection.execute(text("ALTER TABLE answers DROP COLUMN recorded"))
        connection.execute(schema_version.update().values(version=5))
    database.close()
    with built_app({"DATABASE_URL": database_url, "CALL_LOG_TOKEN": CALL_LOG_TOKEN}) as app:
        database = app.extensions["call_log"].database
        with database.engine.connect() as connection:
            assert connection.execute(select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION] == [9]
            inspector = inspect(connection)
            assert "region_url" in {column["name"] for column in inspector.get_columns("answers")}
            assert "call_actions" in inspector.get_table_names()
            assert "recorded" in {column["name"] for column in inspector.get_columns("answers")}
            assert {"recordings", "deliveries", "forward_endpoints"} <= set(inspector.get_table_names())
