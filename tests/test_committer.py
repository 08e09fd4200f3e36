"""The one group commit: a batch's outcomes, one bad row failing only itself, and two servers on one leg."""

import json
import random
import threading
import time

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text

from calllog.committer import Committer
from calllog.legs import LEG_FIELDS, fold_leg
from calllog.rows import EventRow, event_row, fit
from calllog.schema import Database, StorageError
from conftest import FIXTURES, answer_record, call_log_reader, load_fixture
from events import Payload
from runtime.metrics import Metrics
from support.pg import database_url_for, fresh_postgres_url

RECEIVED = "2026-11-24T09:00:00.000Z"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return database_url_for(request.param, tmp_path)


@pytest.fixture
def committer(database_url):
    database = Database(database_url)
    committer = Committer(database, Metrics(CollectorRegistry()))
    yield committer
    committer.close()
    database.close()


def row(status: str, leg: str = "leg-1", at: str = "2026-11-24T09:00:00.000Z") -> tuple:
    return stored({"status": status, "uuid": leg, "conversation_uuid": "CON-1", "timestamp": at})


def stored(payload: dict) -> EventRow:
    return event_row(Payload(payload), RECEIVED, True)


def test_each_event_is_new_once_whether_repeated_in_a_batch_or_across_batches(committer):
    started, ringing = row("started"), row("ringing", at="2026-11-24T09:00:01.000Z")
    assert committer.commit([started, started._replace(), ringing], []) == [True, False, True]
    assert committer.commit([ringing._replace()], []) == [False]


def stored_legs(database_url: str) -> tuple[dict, dict]:
    """Each leg as the call log holds it, and as folding all its stored events again gives it."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        names = ", ".join(LEG_FIELDS)
        held = {
            uuid: dict(zip(LEG_FIELDS, rest))
            for uuid, *rest in connection.execute(text(f"SELECT uuid, {names} FROM legs"))
        }
        payloads: dict[str, list] = {}
        for uuid, payload in connection.execute(text("SELECT leg_uuid, payload FROM events ORDER BY id")):
            payloads.setdefault(uuid, []).append(json.loads(payload))
    engine.dispose()
    return held, {uuid: fit("legs", fold_leg(events)) for uuid, events in payloads.items()}


LEG_EVENTS = ("started", "ringing", "answered", "human", "completed", "busy")


def test_legs_folded_batch_by_batch_equal_the_fold_of_all_their_events_in_any_order(committer, database_url):
    shuffle = random.Random(30)
    fixtures = [load_fixture(FIXTURES / "events" / f"{name}.json") for name in LEG_EVENTS]
    queues = []
    for leg in range(12):
        events = [
            dict(payload, uuid=f"leg-{leg}", timestamp=f"2026-11-24T09:00:{at:02d}.000Z")
            for at, payload in enumerate(fixtures)
        ]
        # Half the legs send their events in timestamp order, as Vonage mostly does; the others in any order.
        if leg % 2:
            shuffle.shuffle(events)
        queues.append(events)
    arrivals = []
    while any(queues):
        arrivals.append(shuffle.choice([queue for queue in queues if queue]).pop(0))
    while arrivals:
        size = shuffle.randint(1, 7)
        batch, arrivals = arrivals[:size], arrivals[size:]
        committer.commit([stored(payload) for payload in batch], [])
        held, folded = stored_legs(database_url)
        assert held == folded
    assert len(held) == 12 and all(leg["status"] == "busy" for leg in held.values())


def test_an_event_after_a_legs_fold_is_folded_onto_it_and_one_before_folds_it_again(committer, database_url):
    # Which of the two ways ran shows when a stored event is changed behind the committer's back: folded onto the
    # leg, the new event leaves what that event gave the leg alone; folded again, the leg loses it.
    started, answered = row("started"), row("answered", at="2026-11-24T09:00:05.000Z")
    committer.commit([started, answered], [])
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE events SET payload = '{}' WHERE kind = 'answered'"))
    committer.commit([row("completed", at="2026-11-24T09:00:09.000Z")], [])
    held, _ = stored_legs(database_url)
    assert (held["leg-1"]["status"], held["leg-1"]["answer_time"]) == ("completed", "2026-11-24T09:00:05.000Z")
    committer.commit([row("ringing", at="2026-11-24T09:00:01.000Z")], [])
    held, folded = stored_legs(database_url)
    assert held["leg-1"]["answer_time"] is None and held == folded
    engine.dispose()


def test_a_row_the_database_refuses_fails_alone_and_the_rest_are_stored(committer, database_url):
    good, ringing = row("started"), row("ringing", at="2026-11-24T09:00:01.000Z")
    # NOT NULL: the database refuses this row
    bad = ringing._replace(verified=None)
    outcomes = committer.commit([good, bad], [])
    assert outcomes[0] is True
    assert isinstance(outcomes[1], StorageError)
    with call_log_reader(database_url) as reader:
        assert reader.count_events() == 1


def test_answer_rows_are_stored_with_their_conversation(committer, database_url):
    answer = answer_record("CON-9", RECEIVED, verified=False)
    assert committer.commit([], [answer]) == []
    with call_log_reader(database_url) as reader:
        (call,) = reader.list_calls()[0]
    assert call["conversation_uuid"] == "CON-9" and call["answers"][0]["callee"] == "447700900000"


def wait_for_lock_waiters(engine, count: int, seconds: float = 20) -> None:
    """Until `count` other sessions wait on a row lock; fails if they never do."""
    deadline = time.monotonic() + seconds
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    while True:
        with engine.connect() as connection:
            if connection.execute(query).scalar() >= count:
                return
        assert time.monotonic() < deadline, f"{count} sessions never waited for the leg's lock"
        time.sleep(0.01)


def test_two_servers_folding_one_leg_at_once_lose_no_event():
    """Two committers (as two servers) store an event of the same leg at the same moment; the leg keeps both.

    PostgreSQL only: SQLite has one writer at a time, so the two cannot interleave there. The test holds the
    leg's row until both have started: each must wait for it *before* reading the leg's events, or each
    folds a leg missing the other's event and the last to write wins.
    """
    url = fresh_postgres_url()
    databases = [Database(url), Database(url)]
    first, second = (Committer(database, Metrics(CollectorRegistry())) for database in databases)
    started = load_fixture(FIXTURES / "events" / "started.json")
    answered = load_fixture(FIXTURES / "events" / "answered.json")
    completed = load_fixture(FIXTURES / "events" / "completed.json")
    assert first.commit([stored(started)], []) == [True]
    engine = create_engine(url)
    holder = engine.connect()
    holder.execute(text("SELECT uuid FROM legs WHERE uuid = :uuid FOR UPDATE"), {"uuid": started["uuid"]})
    outcomes = {}
    threads = [
        threading.Thread(target=lambda: outcomes.update(a=first.commit([stored(answered)], []))),
        threading.Thread(target=lambda: outcomes.update(b=second.commit([stored(completed)], []))),
    ]
    for thread in threads:
        thread.start()
    wait_for_lock_waiters(engine, 2)
    holder.rollback()
    holder.close()
    for thread in threads:
        thread.join()
    assert outcomes == {"a": [True], "b": [True]}
    with call_log_reader(url) as reader:
        (leg,) = reader.get_call(answered["conversation_uuid"])["legs"]
    assert leg["answer_time"] == answered["timestamp"]
    assert (leg["status"], leg["price"]) == ("completed", completed["price"])
    for committer, database in zip((first, second), databases):
        committer.close()
        database.close()
    engine.dispose()


def test_a_batch_chosen_as_a_deadlock_victim_is_tried_again_not_failed(caplog):
    """Another server's transaction and this batch lock the same two events in opposite orders; PostgreSQL
    aborts the batch (deadlock_detected), and the batch is committed on its next attempt."""
    url = fresh_postgres_url()
    database = Database(url)
    committer = Committer(database, Metrics(CollectorRegistry()))
    first, second = row("started"), row("ringing", at="2026-11-24T09:00:01.000Z")
    low, high = sorted((first, second))  # the committer inserts in key order
    database.ensure_schema()
    engine = create_engine(url)
    other = engine.connect()
    # The other server waits far longer before looking for deadlocks, so this batch is the one aborted.
    other.execute(text("SET deadlock_timeout = '20s'"))
    insert = text(
        "INSERT INTO events (event_key, conversation_uuid, leg_uuid, kind, timestamp, received_at, verified, payload)"
        " VALUES (:key, 'CON-1', 'leg-1', 'started', 't', 'r', true, '{}')"
    )
    other.execute(insert, {"key": high[0]})
    outcome = {}
    batch = threading.Thread(target=lambda: outcome.update(result=committer.commit([first, second], [])))
    batch.start()
    wait_for_lock_waiters(engine, 1)  # the batch holds the low key and waits for the high one
    other.execute(insert, {"key": low[0]})  # returns once the batch, deadlocked, has rolled back
    other.rollback()
    other.close()
    batch.join()
    assert outcome["result"] == [True, True]
    assert "trying it again" in caplog.text
    committer.close()
    database.close()
    engine.dispose()


def test_a_long_read_on_sqlite_does_not_hold_up_the_writers_commits(tmp_path):
    """The call log's reads (the page's summary can take a second on a big database) run beside the writer: in
    WAL mode a reader needs no lock, and one that took SQLite's write lock would make events wait, then fail."""
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    reading, writing = Database(url), Database(url)
    committer = Committer(writing, Metrics(CollectorRegistry()))
    assert committer.commit([row("started")], []) == [True]
    outcome = []
    try:
        with reading.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM events")).scalar_one() == 1
            commit = threading.Thread(target=lambda: outcome.append(committer.commit([row("ringing")], [])))
            commit.start()
            commit.join(5)
            waited = commit.is_alive()
        assert not waited, "the commit waited for the reader to finish"
        assert outcome == [[True]]
    finally:
        commit.join()
        committer.close()
        reading.close()
        writing.close()
