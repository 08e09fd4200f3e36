"""The one group commit: a batch of the workers' writes stored in one transaction, before any is acknowledged."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING

from calllog.deliveries import ANSWER_TYPE, DELIVERY_COLUMNS, EVENT_TYPE, Forwarding, delivery_rows
from calllog.legs import FOLD_FIELDS, LEG_FIELDS, fold_leg, fold_onto, fold_order
from calllog.rows import (
    ANSWER_COLUMNS,
    EVENT_COLUMNS,
    RECORD_KIND,
    RECORDING_COLUMNS,
    EventRow,
    answer_key,
    column_text,
    fit,
    recording_row,
)
from calllog.schema import COLUMN_LENGTHS, SQLITE_BEGIN, Database, StorageError, brief
from events import FINAL_STATUSES
from runtime.logs import LOGGER_NAME

if TYPE_CHECKING:  # not imported here: serve.py imports this module before it sets PROMETHEUS_MULTIPROC_DIR
    from runtime.metrics import Metrics

BATCH_LIMIT = 256
ANSWERS_PER_STATEMENT = 200  # 13 parameters a row: far below SQLite's limit of 32,766 a statement

log = logging.getLogger(f"{LOGGER_NAME}.committer")


class _Statements:
    """The write path's SQL, written once per database in its driver's parameter style.

    It runs on the driver's own cursor, skipping SQLAlchemy's compiling, parameter processing and
    result wrapping: for a batch of events that is several times cheaper than Core statements, and the
    writer spends its time on little else.
    """

    def __init__(self, dialect_name: str, paramstyle: str):
        self.mark = "?" if paramstyle == "qmark" else "%s"
        # SQLite's connections run with the driver's own transactions off (see schema.database_engine), so a
        # batch opens its own, taking the write lock up front; PostgreSQL's driver opens one itself.
        self.begin = SQLITE_BEGIN if dialect_name == "sqlite" else None
        smaller, larger = ("MIN", "MAX") if dialect_name == "sqlite" else ("LEAST", "GREATEST")
        self.insert_legs = None
        if dialect_name == "postgresql":
            self.insert_legs = f"INSERT INTO legs (uuid) VALUES ({self.mark}) ON CONFLICT (uuid) DO NOTHING"
        # The legs as last folded, with where their fold ended. On PostgreSQL this also locks them (in one order,
        # against deadlocks), so that two servers folding the same leg at once cannot lose an event, nor both count
        # it as ended; the rows are made first, so that a new leg is locked too. SQLite needs no lock: a writer
        # there holds the whole database.
        names = ", ".join(f'"{name}"' for name in ("uuid", *FOLD_FIELDS, *LEG_FIELDS))
        self._read_legs = f"SELECT {names} FROM legs WHERE uuid IN "
        self._lock_legs = " ORDER BY uuid FOR UPDATE" if dialect_name == "postgresql" else ""
        marks = ", ".join([self.mark] * (len(FOLD_FIELDS) + len(LEG_FIELDS) + 1))
        updates = ", ".join(f'"{name}" = excluded."{name}"' for name in (*FOLD_FIELDS, *LEG_FIELDS))
        self.upsert_legs = f"INSERT INTO legs ({names}) VALUES ({marks}) ON CONFLICT (uuid) DO UPDATE SET {updates}"
        self.touch_conversations = (
            f"INSERT INTO conversations (conversation_uuid, started_at, updated_at) "
            f"VALUES ({self.mark}, {self.mark}, {self.mark}) ON CONFLICT (conversation_uuid) DO UPDATE SET "
            f"started_at = {smaller}(conversations.started_at, excluded.started_at), "
            f"updated_at = {larger}(conversations.updated_at, excluded.updated_at)"
        )
        names = ", ".join(f'"{name}"' for name in DELIVERY_COLUMNS)
        marks = ", ".join([self.mark] * len(DELIVERY_COLUMNS))
        self.insert_deliveries = (
            f"INSERT INTO deliveries ({names}) VALUES ({marks}) ON CONFLICT (endpoint, webhook_id) DO NOTHING"
        )
        names = ", ".join(f'"{name}"' for name in RECORDING_COLUMNS)
        marks = ", ".join([self.mark] * len(RECORDING_COLUMNS))
        self.insert_recordings = (
            f"INSERT INTO recordings ({names}) VALUES ({marks}) ON CONFLICT (recording_uuid) DO NOTHING"
        )
        # Statements for a number of rows, written once per size (a batch has at most BATCH_LIMIT).
        self._by_size: dict[tuple[str, int], str] = {}

    def _insert(self, table: str, columns: tuple[str, ...], rows: int) -> str:
        one_row = "(" + ", ".join([self.mark] * len(columns)) + ")"
        names = ", ".join(f'"{name}"' for name in columns)
        return f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one_row] * rows)

    def insert_answers_returning(self, rows: int) -> str:
        """Insert `rows` answer decisions in one statement, returning the keys of those not stored before."""
        key = ("insert_answers", rows)
        if key not in self._by_size:
            conflict = " ON CONFLICT (answer_key) DO NOTHING RETURNING answer_key"
            self._by_size[key] = self._insert("answers", ANSWER_COLUMNS, rows) + conflict
        return self._by_size[key]

    def insert_events(self, rows: int) -> str:
        """Insert `rows` events in one statement, returning the keys and ids of those not stored before."""
        key = ("insert_events", rows)
        if key not in self._by_size:
            conflict = " ON CONFLICT (event_key) DO NOTHING RETURNING event_key, id"
            self._by_size[key] = self._insert("events", EVENT_COLUMNS, rows) + conflict
        return self._by_size[key]

    def legs_as_folded(self, count: int) -> str:
        """`count` legs as last folded, each with where its fold ended (locked on PostgreSQL, see above)."""
        key = ("legs_as_folded", count)
        if key not in self._by_size:
            marks = ", ".join([self.mark] * count)
            self._by_size[key] = f"{self._read_legs}({marks}){self._lock_legs}"
        return self._by_size[key]

    def leg_payloads(self, count: int) -> str:
        """The stored events of `count` legs (ids and payloads), in the order they were stored."""
        key = ("leg_payloads", count)
        if key not in self._by_size:
            marks = ", ".join([self.mark] * count)
            self._by_size[key] = f"SELECT leg_uuid, id, payload FROM events WHERE leg_uuid IN ({marks}) ORDER BY id"
        return self._by_size[key]


def _runner(cursor):
    """`run(statement, parameters)` on a driver cursor: a list of parameter tuples runs the statement once
    per tuple; returns the cursor for its rows."""

    def run(statement: str, parameters: tuple | list = ()):
        if isinstance(parameters, list):
            cursor.executemany(statement, parameters)
        else:
            cursor.execute(statement, parameters)
        return cursor

    return run


# PostgreSQL's deadlock_detected and serialization_failure: another server's transaction got in the way,
# and the same batch succeeds when tried again.
TRANSIENT_STATES = ("40P01", "40001")
TRANSIENT_ATTEMPTS = 3


def _transient(error: Exception) -> bool:
    return getattr(error, "sqlstate", None) in TRANSIENT_STATES


Outcome = bool | StorageError  # for an event: True if new, False for a repeated delivery, or why it failed


class Committed(list):
    """Each event's Outcome, in order; `answers_failed` says why the batch's answer decisions were not all stored
    (None when they were: stored now, or already)."""

    answers_failed: StorageError | None = None


ENDS = frozenset(FINAL_STATUSES)
FOLD_TIMESTAMP_LENGTH = COLUMN_LENGTHS["legs"]["fold_timestamp"]


class Committer:
    """Stores batches of event and answer rows, each batch in one transaction on one kept-open connection.

    With `forwarding` (FORWARD_URL set), each new event and answer decision it wants gets its deliveries, one per
    endpoint, in the same transaction; without, the batch runs not one statement more."""

    def __init__(self, database: Database, metrics: Metrics, forwarding: Forwarding | None = None, clock=time.time):
        self.database = database
        self.metrics = metrics
        self.forwarding = forwarding
        self._clock = clock
        self._statements = _Statements(database.engine.dialect.name, database.engine.dialect.paramstyle)
        # Kept open between batches; replaced after any failure.
        self._connection = None

    def commit(self, event_rows: list[EventRow], answer_rows: list[dict]) -> Committed:
        """Store these rows, in one transaction if it succeeds; return each event's outcome, and whether the answer
        decisions were stored. Never raises.

        If the transaction fails, each row is tried alone, so one bad row fails only itself.
        """
        writes = len(event_rows) + len(answer_rows)
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                return Committed(self._commit(event_rows, answer_rows))
            except Exception as error:
                self.metrics.commit_errors.inc()
                if _transient(error) and attempt < TRANSIENT_ATTEMPTS:
                    log.warning("a batch of %d writes met %s; trying it again", writes, brief(error))
                    continue
                log.warning("a batch of %d writes failed (%s); trying each alone", writes, brief(error))
                break
        outcomes = Committed()
        for row in event_rows:
            try:
                outcomes += self._commit([row], [])
            except Exception as error:
                self.metrics.commit_errors.inc()
                outcomes.append(StorageError(f"the {self.database.backend} database failed: {brief(error)}"))
        for row in answer_rows:
            try:
                self._commit([], [row])
            except Exception as error:
                self.metrics.commit_errors.inc()
                # The worker keeps it and sends it again; its key makes the rows stored meanwhile count once.
                outcomes.answers_failed = StorageError(f"the {self.database.backend} database failed: {brief(error)}")
        return outcomes

    def close(self) -> None:
        """Close the kept-open connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _commit(self, event_rows: list[EventRow], answer_rows: list[dict]) -> list[bool]:
        if not event_rows and not answer_rows:
            return []
        self.database.ensure_schema()
        if self._connection is None:
            self._connection = self.database.engine.raw_connection()
        connection, cursor = self._connection, None
        started = time.perf_counter()
        self._replays = 0
        try:
            cursor = connection.cursor()
            run = _runner(cursor)
            if self._statements.begin:
                run(self._statements.begin)
            outcomes, ended = self._write(run, event_rows, answer_rows)
            connection.commit()
        except BaseException:
            # Whatever state the connection is in (mid-transaction, or lost), the next batch starts afresh
            # on a new one; rolling back first releases SQLite's write lock even if closing is deferred.
            self._connection = None
            settle = [connection.rollback, connection.invalidate]
            for step in settle if cursor is None else [cursor.close, *settle]:
                with contextlib.suppress(Exception):
                    step()
            raise
        cursor.close()
        self._count(len(event_rows) + len(answer_rows), time.perf_counter() - started, outcomes, ended)
        if self._replays:
            self.metrics.answer_replays.inc(self._replays)
        return outcomes

    def _count(self, writes: int, seconds: float, outcomes: list[bool], ended: list[str]) -> None:
        """Count a committed transaction: only once it is committed, so a batch tried again is counted once."""
        metrics = self.metrics
        metrics.batch_size.observe(writes)
        metrics.commit_latency.observe(seconds)
        new = sum(outcomes)
        if new:
            metrics.events_stored.inc(new)
        if new < len(outcomes):
            metrics.events_repeated.inc(len(outcomes) - new)
        for status in ended:
            metrics.calls_ended[status].inc()

    def _write(self, run, event_rows: list[EventRow], answer_rows: list[dict]) -> tuple[list[bool], list[str]]:
        """Write the rows; return each event's outcome and the final statuses legs reached for the first time."""
        answer_rows = [fit("answers", row) for row in answer_rows]
        # Conversations first, in key order, as calllog.retention locks them: a prune and a batch then take
        # their locks in one order (conversation, then its rows), and a batch's new rows are never under a
        # conversation that a prune is removing.
        touched: dict[str, tuple[str, str]] = {}
        times = [(row.conversation_uuid, row.received_at) for row in event_rows]
        times += [(row.get("conversation_uuid"), row.get("received_at")) for row in answer_rows]
        for uuid, at in times:
            if uuid:
                first, last = touched.get(uuid, (at, at))
                touched[uuid] = (min(first, at), max(last, at))
        if touched:
            run(self._statements.touch_conversations, [(uuid, *times) for uuid, times in sorted(touched.items())])
        outcomes, ended, new_events = self._write_events(run, event_rows)
        new_answers = self._write_answers(run, answer_rows) if answer_rows else []
        if self.forwarding is not None and (new_events or new_answers):
            self._write_deliveries(run, new_events, new_answers)
        return outcomes, ended

    def _write_deliveries(self, run, new_events: list[EventRow], new_answers: list[str]) -> None:
        """One delivery per endpoint of each new event and answer decision that FORWARD_EVENTS wants."""
        forwarding = self.forwarding
        messages = [(row.event_key, EVENT_TYPE) for row in new_events if forwarding.wants(row.kind)]
        if forwarding.wants_answers:
            messages += [(key, ANSWER_TYPE) for key in new_answers]
        if messages:
            run(self._statements.insert_deliveries, delivery_rows(forwarding, messages, self._clock()))

    def _write_answers(self, run, rows: list[dict]) -> list[str]:
        """Insert the answer decisions whose key is not stored yet; one whose key is (a replayed token) is counted.
        Returns the keys inserted."""
        # In the order they came (the call log lists a call's decisions by id): a deadlock with another server
        # inserting the same keys in another order is retried like any (TRANSIENT_STATES).
        by_key = {row.get("answer_key") or answer_key(): row for row in rows}
        keys = list(by_key)
        inserted: list[str] = []
        for start in range(0, len(keys), ANSWERS_PER_STATEMENT):
            chunk = [{**by_key[key], "answer_key": key} for key in keys[start : start + ANSWERS_PER_STATEMENT]]
            values = tuple(row.get(name) for row in chunk for name in ANSWER_COLUMNS)
            inserted += [key for (key,) in run(self._statements.insert_answers_returning(len(chunk)), values)]
        self._replays = len(rows) - len(inserted)
        return inserted

    def _write_events(self, run, rows: list[EventRow]) -> tuple[list[bool], list[str], list[EventRow]]:
        """Insert the rows not stored before; each is new only if it is the first of its key, here and ever.
        Returns each row's outcome, the final statuses legs reached, and the rows inserted."""
        first_by_key: dict[str, int] = {}
        for index, row in enumerate(rows):
            first_by_key.setdefault(row.event_key, index)
        if not first_by_key:
            return [], [], []
        # In key order: two servers inserting overlapping batches then take the index's locks in one order.
        distinct = [rows[first_by_key[key]] for key in sorted(first_by_key)]
        values = tuple(value for row in distinct for value in row)
        inserted = dict(run(self._statements.insert_events(len(distinct)), values).fetchall())
        new_rows = [row for row in distinct if row.event_key in inserted]
        ended = self._refresh_legs(run, new_rows, inserted)
        # A new recording's webhook makes its download job in the same transaction: stored, it will be fetched.
        recorded = [row for row in new_rows if row.kind == RECORD_KIND]
        if recorded:
            now = time.time()
            jobs = [job for job in (recording_row(row, now) for row in recorded) if job is not None]
            if jobs:
                run(self._statements.insert_recordings, jobs)
        outcomes = [
            row.event_key in inserted and first_by_key[row.event_key] == index for index, row in enumerate(rows)
        ]
        return outcomes, ended, new_rows

    def _refresh_legs(self, run, new_rows: list[EventRow], ids: dict[str, int]) -> list[str]:
        """Fold each leg's new events (`ids` gives each event's id) into the leg, so arrival order never matters:
        onto the leg as last folded when every new event comes after its fold (fold_order), else again from all the
        leg's stored events. Returns the final status of each leg that has one now and had none before: a leg ends
        once, however its events arrive."""
        arrived: dict[str, list[tuple[tuple[str, int], dict]]] = {}
        for row in new_rows:
            if row.leg_uuid:
                payload = json.loads(row.payload)
                arrived.setdefault(row.leg_uuid, []).append((fold_order(payload, ids[row.event_key]), payload))
        if not arrived:
            return []
        statements, uuids = self._statements, sorted(arrived)
        if statements.insert_legs is not None:
            run(statements.insert_legs, [(uuid,) for uuid in uuids])
        folded: dict[str, tuple[tuple, dict]] = {}
        for uuid, timestamp, event_id, *fields in run(statements.legs_as_folded(len(uuids)), tuple(uuids)).fetchall():
            folded[uuid] = ((timestamp, event_id), dict(zip(LEG_FIELDS, fields, strict=True)))
        legs, again = {}, []
        for uuid in uuids:
            news = sorted(arrived[uuid], key=lambda pair: pair[0])
            through, before = folded.get(uuid, ((None, None), None))
            if None not in through and through < news[0][0]:
                legs[uuid] = (news[-1][0], fold_onto(before, [payload for _, payload in news]))
            else:
                again.append(uuid)
        if again:
            stored: dict[str, list[tuple[int, dict]]] = {uuid: [] for uuid in again}
            for uuid, event_id, payload in run(statements.leg_payloads(len(again)), tuple(again)).fetchall():
                stored[uuid].append((event_id, json.loads(payload)))
            for uuid, events in stored.items():
                last = max(fold_order(payload, event_id) for event_id, payload in events)
                legs[uuid] = (last, fold_leg([payload for _, payload in events]))
        rows, ended = [], []
        for uuid in uuids:
            (timestamp, event_id), leg = legs[uuid]
            leg = fit("legs", leg)
            # A timestamp the column cannot hold as it is (too long, a NUL) cannot be compared once stored: the leg's
            # next event folds it again.
            kept = column_text(timestamp, FOLD_TIMESTAMP_LENGTH) == timestamp
            rows.append((uuid, *((timestamp, event_id) if kept else (None, None)), *(leg[name] for name in LEG_FIELDS)))
            status_before = folded[uuid][1]["status"] if uuid in folded else None
            if leg["status"] in ENDS and status_before not in ENDS:
                ended.append(leg["status"])
        run(statements.upsert_legs, rows)
        return ended
