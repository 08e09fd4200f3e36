"""Deliveries in the call log (calllog.deliveries): added by the committer in the event's own transaction, claimed
with a lease by one forwarder at a time, settled, stopped and replayed; over SQLite and PostgreSQL."""

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select, text

from calllog.committer import Committer
from calllog.deliveries import (
    ANSWER_TYPE,
    DELIVERED,
    EVENT_TYPE,
    PENDING,
    STOPPED,
    DeliveryStore,
    Forwarding,
    Messages,
    Outcome,
)
from calllog.rows import event_row
from calllog.schema import Database, StorageError, deliveries
from conftest import answer_record
from events import Payload
from runtime.metrics import Metrics
from support.pg import database_url_for

RECEIVED = "2026-11-24T09:00:00.000Z"
ONE, TWO = "https://one.example/hook", "https://two.example/hook"
NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    database = Database(database_url_for(request.param, tmp_path))
    database.ensure_schema()
    yield database
    database.close()


def committer_for(database, forwarding=None) -> Committer:
    return Committer(database, Metrics(CollectorRegistry()), forwarding, clock=lambda: NOW)


def event(status: str, leg: str = "leg-1", second: int = 0):
    payload = {"status": status, "uuid": leg, "conversation_uuid": "CON-1", "timestamp": f"2026-11-24T09:00:0{second}Z"}
    return event_row(Payload(payload), RECEIVED, True)


def stored_deliveries(database) -> list[tuple]:
    query = select(deliveries.c.endpoint, deliveries.c.webhook_id, deliveries.c.kind, deliveries.c.status)
    with database.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(query))


def test_each_new_event_gets_one_delivery_per_endpoint_and_a_repeated_one_none(database):
    committer = committer_for(database, Forwarding((ONE, TWO)))
    started = event("started")
    assert committer.commit([started, started._replace()], []) == [True, False]
    assert committer.commit([started._replace()], []) == [False]
    committer.close()
    assert stored_deliveries(database) == [
        (ONE, started.event_key, EVENT_TYPE, PENDING),
        (TWO, started.event_key, EVENT_TYPE, PENDING),
    ]


def test_answer_decisions_get_deliveries_of_their_own_type_once_per_key(database):
    committer = committer_for(database, Forwarding((ONE,)))
    answer = {**answer_record("CON-9", RECEIVED), "answer_key": "jti:abc"}
    committer.commit([], [answer])
    committer.commit([], [dict(answer)])
    committer.close()
    assert stored_deliveries(database) == [(ONE, "jti:abc", ANSWER_TYPE, PENDING)]


def test_forward_events_chooses_which_statuses_and_whether_answers_are_sent(database):
    committer = committer_for(database, Forwarding((ONE,), frozenset({"completed"})))
    completed = event("completed", second=2)
    committer.commit([event("started"), completed], [{**answer_record("CON-9", RECEIVED), "answer_key": "jti:x"}])
    committer.close()
    assert stored_deliveries(database) == [(ONE, completed.event_key, EVENT_TYPE, PENDING)]


def test_an_event_whose_deliveries_cannot_be_stored_is_not_stored_either(database):
    committer = committer_for(database, Forwarding((ONE,)))
    with database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE deliveries RENAME TO deliveries_gone"))
    (outcome,) = committer.commit([event("started")], [])
    committer.close()
    assert isinstance(outcome, StorageError)
    with database.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM events")).scalar() == 0


def test_with_forwarding_off_the_batch_runs_no_statement_on_deliveries(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'calls.db'}")
    database.ensure_schema()
    database.engine.dispose()
    statements = []

    @sqlalchemy_event.listens_for(database.engine, "connect")
    def trace(dbapi_connection: sqlite3.Connection, _record):
        dbapi_connection.set_trace_callback(statements.append)

    # On: one delivery row for the event and one for the answer decision (sqlite3 traces each row of an executemany).
    for forwarding, expected in ((None, 0), (Forwarding((ONE,)), 2)):
        statements.clear()
        committer = committer_for(database, forwarding)
        committer.commit([event("started", leg=f"leg-{expected}")], [answer_record("CON-9", RECEIVED)])
        committer.close()
        assert sum("deliveries" in statement for statement in statements) == expected, statements
    # A repeated delivery of an event already stored makes none.
    statements.clear()
    committer = committer_for(database, Forwarding((ONE,)))
    committer.commit([event("started", leg="leg-2")], [])
    committer.close()
    assert not any("deliveries" in statement for statement in statements), statements
    database.close()


def pending(database, count: int = 3) -> DeliveryStore:
    committer = committer_for(database, Forwarding((ONE,)))
    committer.commit([event("started", second=index) for index in range(count)], [])
    committer.close()
    return DeliveryStore(database)


def test_two_forwarders_claiming_at_once_never_hold_the_same_delivery(database):
    store = pending(database, 6)
    with ThreadPoolExecutor(2) as pool:
        claims = list(pool.map(lambda _: store.claim(ONE, 6, NOW, 30), range(2)))
    ids = [claimed.id for claim in claims for claimed in claim]
    assert len(ids) == len(set(ids)) == 6


def test_a_claimed_delivery_is_claimed_again_only_once_its_lease_has_run_out(database):
    store = pending(database, 1)
    (first,) = store.claim(ONE, 5, NOW, 30)
    assert store.claim(ONE, 5, NOW + 29, 30) == []
    (again,) = store.claim(ONE, 5, NOW + 31, 30)
    assert again.id == first.id and again.attempts == 2
    # The attempt whose lease ran out cannot settle it any more; the one that holds it now can.
    assert not store.record(first, Outcome(DELIVERED, NOW, 204, None), NOW + 32)
    assert store.record(again, Outcome(DELIVERED, NOW, 204, None), NOW + 32)
    assert store.claim(ONE, 5, NOW + 1000, 30) == []


def test_a_delivery_waits_for_its_next_attempt(database):
    store = pending(database, 1)
    (claimed,) = store.claim(ONE, 5, NOW, 30)
    store.record(claimed, Outcome(PENDING, NOW + 5, 500, "answered 500"), NOW)
    assert store.claim(ONE, 5, NOW + 4, 30) == []
    assert [delivery.id for delivery in store.claim(ONE, 5, NOW + 5, 30)] == [claimed.id]


def test_a_stopped_endpoint_has_its_pending_deliveries_stopped_until_replayed(database):
    store = pending(database, 2)
    assert store.stop_endpoint(ONE, "answered 410 Gone", NOW) == 2
    assert ONE in store.stopped_endpoints()
    assert {status for *_, status in stored_deliveries(database)} == {STOPPED}
    assert store.replay(NOW - 60, STOPPED, ONE, NOW) == 2
    assert store.stopped_endpoints() == {}
    assert len(store.claim(ONE, 5, NOW, 30)) == 2


def test_the_message_is_the_payload_as_received_and_the_legs_folded_state(database):
    committer = committer_for(database, Forwarding((ONE,)))
    payload = {
        "status": "completed",
        "uuid": "leg-7",
        "conversation_uuid": "CON-7",
        "timestamp": "2026-11-24T09:00:40.000Z",
        "duration": "12",
        "price": "0.0042",
    }
    row = event_row(Payload(payload), RECEIVED, True)
    committer.commit([row], [])
    committer.close()
    message = Messages(database).read(EVENT_TYPE, row.event_key)
    assert message.type == EVENT_TYPE and message.timestamp == RECEIVED
    assert message.data["event"] == payload
    assert message.data["leg"] == {"uuid": "leg-7", "status": "completed", "duration": 12, "price": "0.0042"}
    assert Messages(database).read(EVENT_TYPE, "no-such-key") is None


def test_pruning_a_call_removes_its_deliveries_and_leaves_the_others(database):
    from calllog.retention import prune

    committer = committer_for(database, Forwarding((ONE,)))
    old = event_row(
        Payload({"status": "started", "uuid": "old", "conversation_uuid": "CON-OLD", "timestamp": "T1"}),
        "2020-01-01T00:00:00.000Z",
        True,
    )
    answer = {**answer_record("CON-OLD", "2020-01-01T00:00:00.000Z"), "answer_key": "jti:old"}
    recent = event("started")
    committer.commit([old, recent], [answer])
    committer.close()
    prune(database, "2021-01-01T00:00:00.000Z")
    assert [webhook_id for _, webhook_id, _, _ in stored_deliveries(database)] == [recent.event_key]


def test_deliveries_never_made_are_made_for_an_endpoint_added_later_and_only_once(database):
    committer = committer_for(database, Forwarding((ONE,), frozenset({"started", "answer"})))
    started, ringing = event("started"), event("ringing", second=1)
    committer.commit([started, ringing], [{**answer_record("CON-9", RECEIVED), "answer_key": "jti:a"}])
    committer.close()
    store = DeliveryStore(database)
    later = Forwarding((ONE, TWO), frozenset({"started", "answer"}))
    assert store.add_missing(later, "2026-11-24T08:00:00.000Z", NOW) == 2
    assert store.add_missing(later, "2026-11-24T08:00:00.000Z", NOW) == 0
    assert stored_deliveries(database) == sorted(
        [
            (ONE, started.event_key, EVENT_TYPE, PENDING),
            (TWO, started.event_key, EVENT_TYPE, PENDING),
            (ONE, "jti:a", ANSWER_TYPE, PENDING),
            (TWO, "jti:a", ANSWER_TYPE, PENDING),
        ]
    )
    assert store.add_missing(Forwarding(("https://three.example/h",)), "2027-01-01T00:00:00.000Z", NOW) == 0
