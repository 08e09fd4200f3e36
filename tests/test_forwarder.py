"""The forwarding job itself (outbound.forwarding.Forwarder), run pass by pass on a clock the test moves, against a
receiver in a process of its own: the whole schedule walked to its last attempt, and a dead endpoint beside a live
one."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from calllog.committer import Committer
from calllog.deliveries import DELIVERED, FAILED, Forwarding
from calllog.rows import event_row
from calllog.schema import Database, deliveries
from events import Payload
from outbound.forwarding import CONCURRENCY, Forwarder
from outbound.retry_schedule import ATTEMPTS, SCHEDULE
from outbound.signing import Signer
from runtime.metrics import ForwardingMetrics, Metrics
from support.forwarding import SECRET, receiving
from support.production import wait_until
from support.servers import free_port

START = 1_800_000_000.0


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'calls.db'}")
    database.ensure_schema()
    yield database
    database.close()


def store_events(database: Database, endpoints: tuple[str, ...], count: int, clock: Clock) -> list[str]:
    rows = [
        event_row(
            Payload({"status": "started", "uuid": f"leg-{n}", "conversation_uuid": "CON-1", "timestamp": f"T{n}"}),
            "2026-11-24T09:00:00.000Z",
            True,
        )
        for n in range(count)
    ]
    committer = Committer(database, Metrics(CollectorRegistry()), Forwarding(endpoints), clock)
    assert all(committer.commit(rows, []))
    committer.close()
    return [row.event_key for row in rows]


def forwarder_for(database: Database, endpoints: tuple[str, ...], clock: Clock) -> Forwarder:
    metrics = ForwardingMetrics(CollectorRegistry(), endpoints)
    return Forwarder(Database(database.url), endpoints, Signer((SECRET,)), 2, metrics, clock=clock, jitter=lambda: 0.0)


def rows(database: Database) -> list:
    with database.connect() as connection:
        return connection.execute(select(deliveries).order_by(deliveries.c.id)).all()


def settled(database: Database) -> bool:
    return all(row.lease_until is None for row in rows(database))


def test_a_delivery_that_always_fails_is_tried_on_every_step_of_the_schedule_then_kept_as_failed(database, tmp_path):
    clock = Clock()
    with receiving(tmp_path, "--fail-first", "1000", "--status", "500") as receiver:
        (key,) = store_events(database, (receiver.url,), 1, clock)
        forwarder = forwarder_for(database, (receiver.url,), clock)
        try:
            for attempt in range(1, ATTEMPTS + 1):
                forwarder.run_due(clock.now)
                wait_until(
                    lambda made=attempt: len(receiver.requests()) == made and settled(database), 20, "an attempt"
                )
                (row,) = rows(database)
                assert row.attempts == attempt
                if attempt < ATTEMPTS:
                    # Not a second early: the next attempt waits for its step of the schedule.
                    assert row.next_attempt_at == clock.now + SCHEDULE[attempt]
                    clock.now = row.next_attempt_at - 0.5
                    forwarder.run_due(clock.now)
                    assert len(receiver.requests()) == attempt
                    clock.now = row.next_attempt_at
            clock.now += 10 * 86400
            forwarder.run_due(clock.now)
        finally:
            forwarder.close()
    (row,) = rows(database)
    assert (row.status, row.attempts, row.last_status) == (FAILED, ATTEMPTS, 500)
    assert {request["id"] for request in receiver.requests()} == {key} and len(receiver.requests()) == ATTEMPTS


def test_an_endpoint_that_hangs_holds_only_its_own_threads_and_the_other_gets_everything(database, tmp_path):
    clock = Clock()
    with receiving(tmp_path, "--hang-first", "1000") as slow, receiving(tmp_path) as live:
        endpoints = (slow.url, live.url)
        keys = store_events(database, endpoints, 12, clock)
        forwarder = forwarder_for(database, endpoints, clock)
        try:
            wait_until(lambda: forwarder.run_due(clock.now) and set(keys) <= set(live.delivered()), 20, "all delivered")
            # The hanging endpoint has at most its own few deliveries in flight; the rest wait in the database.
            assert len(slow.requests()) <= CONCURRENCY
        finally:
            forwarder.close()
    statuses = {(row.endpoint, row.status) for row in rows(database)}
    assert (live.url, DELIVERED) in statuses and all(status != DELIVERED for url, status in statuses if url == slow.url)


def test_a_dead_endpoint_never_answering_is_failed_over_and_over_without_losing_its_deliveries(database, tmp_path):
    clock = Clock()
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    keys = store_events(database, (dead,), 3, clock)
    forwarder = forwarder_for(database, (dead,), clock)
    try:
        forwarder.run_due(clock.now)
        wait_until(lambda: settled(database) and all(row.attempts == 1 for row in rows(database)), 20, "first attempts")
    finally:
        forwarder.close()
    assert sorted(row.webhook_id for row in rows(database)) == sorted(keys)
    assert all(row.status == "pending" and "cannot connect" in row.last_error for row in rows(database))
