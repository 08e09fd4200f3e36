"""Call records: every event stored once and committed before it is acknowledged, leg records, answer decisions."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import json
import logging
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    exists,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url

from events import event_conversation, event_key, event_kind, leg_uuid
from legs import IN_PROGRESS, LEG_FIELDS, fold_leg, total_price
from logs import LOGGER_NAME

SCHEMA_VERSION = 1
COMMIT_TIMEOUT_SECONDS = 4.0
BATCH_LIMIT = 256
ANSWER_QUEUE_LIMIT = 10_000
# How every SQLite write transaction starts: taking the write lock up front, so two writers never deadlock
# upgrading their read locks.
SQLITE_BEGIN = "BEGIN IMMEDIATE"

log = logging.getLogger(f"{LOGGER_NAME}.storage")
metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
conversations = Table(
    "conversations",
    metadata,
    Column("conversation_uuid", String(100), primary_key=True),
    Column("started_at", String(32), nullable=False, index=True),
    Column("updated_at", String(32), nullable=False),
)
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_key", String(64), nullable=False, unique=True),
    Column("conversation_uuid", String(100), index=True),
    Column("leg_uuid", String(100), index=True),
    Column("kind", String(64), nullable=False),
    Column("timestamp", String(64)),
    Column("received_at", String(32), nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("payload", Text, nullable=False),
)
legs = Table(
    "legs",
    metadata,
    Column("uuid", String(100), primary_key=True),
    Column("conversation_uuid", String(100), index=True),
    Column("direction", String(16)),
    Column("from_number", String(100)),
    Column("to_number", String(100)),
    Column("status", String(64)),
    Column("start_time", String(64)),
    Column("answer_time", String(64)),
    Column("end_time", String(64)),
    Column("duration", Integer),
    Column("rate", String(40)),
    Column("price", String(40)),
    Column("network", String(64)),
    Column("detail", String(200)),
    Column("reason", Text),
    Column("machine_detection", String(16)),
)
answers = Table(
    "answers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_uuid", String(100), index=True),
    Column("leg_uuid", String(100)),
    Column("route", String(16), nullable=False),
    Column("caller", String(100)),
    Column("requested", String(200)),
    Column("callee", String(32)),
    Column("connected", Boolean, nullable=False),
    Column("reason", Text),
    Column("received_at", String(32), nullable=False),
    Column("verified", Boolean, nullable=False),
)

# version -> the tables that version adds; a later version appends its own step.
MIGRATIONS = {1: [conversations, events, legs, answers]}


class StorageError(Exception):
    """The database could not store or read something; the message is safe to show."""


def database_engine(url: str) -> Engine:
    """An engine for DATABASE_URL: SQLite in WAL mode with immediate write locks, or PostgreSQL via psycopg."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)
    engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection, _record):
        # Transactions begin only with SQLITE_BEGIN (SQLAlchemy's below, the writer's in _Statements), so
        # every writer locks up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin_immediate(connection):
        connection.exec_driver_sql(SQLITE_BEGIN)

    return engine


def _columns(table: Table) -> tuple[str, ...]:
    return tuple(column.name for column in table.columns if column.name != "id")


EVENT_COLUMNS = _columns(events)
ANSWER_COLUMNS = _columns(answers)


class _Statements:
    """The write path's SQL, written once per database in its driver's parameter style.

    It runs on the driver's own cursor, skipping SQLAlchemy's compiling, parameter processing and
    result wrapping: for a batch of events that is several times cheaper than Core statements, and the
    writer process spends its time on little else.
    """

    def __init__(self, dialect_name: str, paramstyle: str):
        self.mark = "?" if paramstyle == "qmark" else "%s"
        # SQLite's connections run with the driver's own transactions off (see database_engine), so a
        # batch opens its own, taking the write lock up front; PostgreSQL's driver opens one itself.
        self.begin = SQLITE_BEGIN if dialect_name == "sqlite" else None
        smaller, larger = ("MIN", "MAX") if dialect_name == "sqlite" else ("LEAST", "GREATEST")
        self.insert_legs = f'INSERT INTO legs (uuid) VALUES ({self.mark}) ON CONFLICT (uuid) DO NOTHING'
        # Lock the legs (in one order, against deadlocks) so that two servers folding the same leg at
        # once cannot lose an event. SQLite needs none: a writer there holds the whole database.
        self.lock_legs = None
        if dialect_name == "postgresql":
            self.lock_legs = "SELECT uuid FROM legs WHERE uuid = ANY(%s) ORDER BY uuid FOR UPDATE"
        assignments = ", ".join(f'"{name}" = {self.mark}' for name in LEG_FIELDS)
        self.update_legs = f"UPDATE legs SET {assignments} WHERE uuid = {self.mark}"
        self.touch_conversations = (
            f"INSERT INTO conversations (conversation_uuid, started_at, updated_at) "
            f"VALUES ({self.mark}, {self.mark}, {self.mark}) ON CONFLICT (conversation_uuid) DO UPDATE SET "
            f"started_at = {smaller}(conversations.started_at, excluded.started_at), "
            f"updated_at = {larger}(conversations.updated_at, excluded.updated_at)"
        )
        self.insert_answers = self._insert("answers", ANSWER_COLUMNS, 1)

    def _insert(self, table: str, columns: tuple[str, ...], rows: int) -> str:
        one_row = "(" + ", ".join([self.mark] * len(columns)) + ")"
        names = ", ".join(f'"{name}"' for name in columns)
        return f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one_row] * rows)

    @functools.lru_cache(maxsize=BATCH_LIMIT)
    def insert_events(self, rows: int) -> str:
        """Insert `rows` events in one statement, returning the keys of those not stored before."""
        return self._insert("events", EVENT_COLUMNS, rows) + " ON CONFLICT (event_key) DO NOTHING RETURNING event_key"

    @functools.lru_cache(maxsize=BATCH_LIMIT)
    def leg_payloads(self, count: int) -> str:
        """The stored payloads of `count` legs, in the order they were stored."""
        marks = ", ".join([self.mark] * count)
        return (
            f"SELECT events.leg_uuid, events.payload FROM events WHERE events.leg_uuid IN ({marks}) ORDER BY events.id"
        )


def migrate(engine: Engine) -> int:
    """Bring the database's schema to SCHEMA_VERSION, one step at a time; return the version it is at."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several servers may start at once against one database: migrate one at a time.
            connection.execute(text("SELECT pg_advisory_xact_lock(804210)"))
        schema_version.create(connection, checkfirst=True)
        current = connection.execute(select(func.max(schema_version.c.version))).scalar() or 0
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"the database is at schema version {current}, newer than this server's {SCHEMA_VERSION}; upgrade the server"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for table in MIGRATIONS[version]:
                table.create(connection, checkfirst=True)
            connection.execute(schema_version.delete())
            connection.execute(schema_version.insert().values(version=version))
        return SCHEMA_VERSION


@dataclass
class Write:
    kind: str  # "event", "answer", or "flush" (a barrier that writes nothing)
    row: dict
    future: Future = field(default_factory=Future)

    def outcome(self, timeout: float | None = None) -> bool:
        """For an event: True if it was new, False for a duplicate; raises StorageError if not committed."""
        try:
            return self.future.result(timeout=timeout)
        except TimeoutError:
            raise StorageError(f"the database did not commit within {timeout:g} s") from None


def event_write(payload: dict, received_at: str, verified: bool) -> Write:
    """The write that stores one event."""
    return Write(
        "event",
        _fit(events, {
            "event_key": event_key(payload),
            "conversation_uuid": event_conversation(payload),
            "leg_uuid": leg_uuid(payload),
            "kind": event_kind(payload),
            "timestamp": None if payload.get("timestamp") is None else str(payload["timestamp"]),
            "received_at": received_at,
            "verified": verified,
            "payload": json.dumps(payload, ensure_ascii=False, default=str),
        }),
    )


def answer_write(row: dict) -> Write:
    """The write that stores one answer decision (see app.answer_row)."""
    return Write("answer", row)


class Store:
    """The call log. Writes from concurrent requests are grouped into one transaction by a writer thread."""

    def __init__(self, url: str):
        self.url = url
        self.engine = database_engine(url)
        self._statements = _Statements(self.engine.dialect.name, self.engine.dialect.paramstyle)
        self._queue: queue.Queue[Write] = queue.Queue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._migrated = False
        self._pending_answers = 0
        self._lock_file: int | None = None
        # The writer's own connection, kept open between batches; replaced after any failure.
        self._write_connection = None
        self._write_lock = threading.Lock()
        database = self.engine.url.database
        # The SQLite database's file, or None for PostgreSQL and in-memory SQLite.
        self._sqlite_file = database if self.backend == "sqlite" and database and database != ":memory:" else None

    @contextlib.contextmanager
    def _exclusive_writer(self):
        """For SQLite, take turns with the other server processes before writing.

        SQLite's own busy handler sleeps and polls while another process writes; a blocking file lock
        wakes the next writer the moment the lock is free, and meanwhile its batch grows.
        """
        if self._sqlite_file is None:
            yield
            return
        if self._lock_file is None:
            self._lock_file = os.open(f"{self._sqlite_file}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def ensure_schema(self) -> None:
        """Create or migrate the schema if not done yet; raise StorageError if the database is unreachable."""
        if self._migrated:
            return
        try:
            if self._sqlite_file is not None:
                Path(self._sqlite_file).parent.mkdir(parents=True, exist_ok=True)
            with self._exclusive_writer():
                migrate(self.engine)
        except StorageError:
            raise
        except Exception as error:
            raise StorageError(f"cannot prepare the {self.backend} database: {_brief(error)}") from None
        self._migrated = True

    # --- writing -----------------------------------------------------------------------------------

    def record_event(self, payload: dict, received_at: str, verified: bool) -> bool:
        """Store one event and wait until it is committed. True if new, False for a duplicate delivery.

        Raises StorageError if it could not be committed (the caller answers 503 so Vonage retries).
        """
        write = event_write(payload, received_at, verified)
        self._submit(write)
        return write.outcome(COMMIT_TIMEOUT_SECONDS)

    def record_answer(self, row: dict) -> None:
        """Queue one answer decision for storage without waiting; a failure is logged, never raised."""
        with self._lock:
            if self._pending_answers >= ANSWER_QUEUE_LIMIT:
                log.error("answer decision not recorded: %s are already waiting for the database", ANSWER_QUEUE_LIMIT)
                return
            self._pending_answers += 1
        self._submit(answer_write(row))

    def flush(self, timeout: float = COMMIT_TIMEOUT_SECONDS) -> None:
        """Wait until every write queued before this call has been committed (or has failed)."""
        barrier = Write("flush", {})
        self._submit(barrier)
        barrier.future.result(timeout=timeout)

    def _submit(self, write: Write) -> None:
        if self._writer is None or not self._writer.is_alive():
            with self._lock:
                if self._writer is None or not self._writer.is_alive():
                    self._writer = threading.Thread(target=self._write_forever, name="call-log-writer", daemon=True)
                    self._writer.start()
        self._queue.put(write)

    def _write_forever(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH_LIMIT:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self.commit_batch(batch)
            answered = sum(write.kind == "answer" for write in batch)
            if answered:
                with self._lock:
                    self._pending_answers -= answered

    def commit_batch(self, batch: list[Write]) -> None:
        """Commit these writes in one transaction and settle each one's future; never raises.

        If the transaction fails, each write is retried alone, so one bad write fails only itself.
        """
        try:
            self._commit(batch)
        except Exception:
            for write in batch:
                if not write.future.done():
                    try:
                        self._commit([write])
                    except Exception as error:
                        self._fail(write, error)

    def _fail(self, write: Write, error: Exception) -> None:
        message = _brief(error)
        if write.kind == "answer":
            log.error("answer decision not recorded: %s", message)
        write.future.set_exception(StorageError(f"the {self.backend} database failed: {message}"))

    def _commit(self, batch: list[Write]) -> None:
        if all(write.kind == "flush" for write in batch):
            for write in batch:
                write.future.set_result(None)
            return
        self.ensure_schema()
        with self._write_lock, self._exclusive_writer():
            if self._write_connection is None:
                self._write_connection = self.engine.raw_connection()
            connection, cursor = self._write_connection, None
            try:
                cursor = connection.cursor()
                run = _runner(cursor)
                if self._statements.begin:
                    run(self._statements.begin)
                outcomes = self._write_batch(run, batch)
                connection.commit()
            except BaseException:
                # Whatever state the connection is in (mid-transaction, or lost), the next batch starts afresh
                # on a new one; rolling back first releases SQLite's write lock even if closing is deferred.
                self._write_connection = None
                settle = [connection.rollback, connection.invalidate]
                for step in settle if cursor is None else [cursor.close, *settle]:
                    with contextlib.suppress(Exception):
                        step()
                raise
            cursor.close()
        for write in batch:
            write.future.set_result(outcomes.get(id(write)))

    def _write_batch(self, run, batch: list[Write]) -> dict[int, bool]:
        outcomes = self._write_events(run, [w for w in batch if w.kind == "event"])
        answer_rows = [_fit(answers, w.row) for w in batch if w.kind == "answer"]
        if answer_rows:
            run(self._statements.insert_answers, [tuple(row.get(name) for name in ANSWER_COLUMNS) for row in answer_rows])
        touched: dict[str, tuple[str, str]] = {}
        for write in batch:
            uuid, at = write.row.get("conversation_uuid"), write.row.get("received_at")
            if uuid:
                first, last = touched.get(uuid, (at, at))
                touched[uuid] = (min(first, at), max(last, at))
        if touched:
            run(self._statements.touch_conversations, [(uuid, *times) for uuid, times in sorted(touched.items())])
        return outcomes

    def _write_events(self, run, writes: list[Write]) -> dict[int, bool]:
        outcomes: dict[int, bool] = {}
        first_by_key: dict[str, Write] = {}
        for write in writes:
            key = write.row["event_key"]
            outcomes[id(write)] = key not in first_by_key
            first_by_key.setdefault(key, write)
        if not first_by_key:
            return outcomes
        rows = [w.row for w in first_by_key.values()]
        values = tuple(row[name] for row in rows for name in EVENT_COLUMNS)
        inserted = {key for (key,) in run(self._statements.insert_events(len(rows)), values).fetchall()}
        for write in writes:
            if write.row["event_key"] not in inserted:
                outcomes[id(write)] = False
        changed_legs = sorted(
            {w.row["leg_uuid"] for w in first_by_key.values() if w.row["leg_uuid"] and w.row["event_key"] in inserted}
        )
        if changed_legs:
            self._refresh_legs(run, changed_legs)
        return outcomes

    def _refresh_legs(self, run, uuids: list[str]) -> None:
        """Re-fold each leg from all its stored events, so arrival order never matters."""
        statements = self._statements
        run(statements.insert_legs, [(uuid,) for uuid in uuids])
        if statements.lock_legs is not None:
            run(statements.lock_legs, (uuids,)).fetchall()
        payloads: dict[str, list[dict]] = {uuid: [] for uuid in uuids}
        for uuid, payload in run(statements.leg_payloads(len(uuids)), tuple(uuids)).fetchall():
            payloads[uuid].append(json.loads(payload))
        updates = []
        for uuid in uuids:
            leg = _fit(legs, fold_leg(payloads[uuid]))
            updates.append((*(leg[name] for name in LEG_FIELDS), uuid))
        run(statements.update_legs, updates)

    # --- reading -----------------------------------------------------------------------------------

    def count_events(self) -> int:
        self.ensure_schema()
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(events)).scalar_one()

    def stored_event_keys(self, keys: list[str]) -> set[str]:
        """Which of these event identities (events.event_key) are stored."""
        self.ensure_schema()
        found: set[str] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                found.update(connection.execute(select(events.c.event_key).where(events.c.event_key.in_(chunk))).scalars())
        return found

    def health(self) -> dict:
        """The database's state for /health: ok with the backend and schema version, or error with why."""
        try:
            self.ensure_schema()
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:
            return {"status": "error", "backend": self.backend, "error": _brief(error)}
        return {"status": "ok", "backend": self.backend, "schema_version": SCHEMA_VERSION}

    def list_calls(
        self, limit: int = 20, cursor: str | None = None, status: str | None = None, number: str | None = None
    ) -> tuple[list[dict], str | None]:
        """Conversations, newest first, with their legs and answer decisions; and the cursor of the next page."""
        self.ensure_schema()
        query = select(conversations).order_by(conversations.c.started_at.desc(), conversations.c.conversation_uuid.desc())
        if cursor:
            started_at, uuid = _decode_cursor(cursor)
            query = query.where(
                or_(
                    conversations.c.started_at < started_at,
                    and_(conversations.c.started_at == started_at, conversations.c.conversation_uuid < uuid),
                )
            )
        if status:
            leg_match = exists().where(and_(legs.c.conversation_uuid == conversations.c.conversation_uuid, legs.c.status == status))
            if status == "refused":
                leg_match = exists().where(
                    and_(answers.c.conversation_uuid == conversations.c.conversation_uuid, answers.c.connected.is_(False))
                )
            elif status == "in_progress":
                leg_match = exists().where(
                    and_(legs.c.conversation_uuid == conversations.c.conversation_uuid, legs.c.status.in_(IN_PROGRESS))
                )
            query = query.where(leg_match)
        if number:
            pattern = f"%{_digits_or_text(number)}%"
            query = query.where(
                or_(
                    exists().where(
                        and_(
                            legs.c.conversation_uuid == conversations.c.conversation_uuid,
                            or_(legs.c.from_number.like(pattern), legs.c.to_number.like(pattern)),
                        )
                    ),
                    exists().where(
                        and_(
                            answers.c.conversation_uuid == conversations.c.conversation_uuid,
                            or_(answers.c.callee.like(pattern), answers.c.caller.like(pattern), answers.c.requested.like(pattern)),
                        )
                    ),
                )
            )
        with self.engine.connect() as connection:
            rows = connection.execute(query.limit(limit + 1)).mappings().all()
            page = rows[:limit]
            calls = self._assemble(connection, page, with_events=False)
        next_cursor = _encode_cursor(page[-1]["started_at"], page[-1]["conversation_uuid"]) if len(rows) > limit else None
        return calls, next_cursor

    def get_call(self, conversation_uuid: str) -> dict | None:
        """One conversation with each leg's ordered events, or None if unknown."""
        self.ensure_schema()
        with self.engine.connect() as connection:
            row = connection.execute(
                select(conversations).where(conversations.c.conversation_uuid == conversation_uuid)
            ).mappings().first()
            if row is None:
                return None
            return self._assemble(connection, [row], with_events=True)[0]

    def _assemble(self, connection: Connection, rows, with_events: bool) -> list[dict]:
        uuids = [row["conversation_uuid"] for row in rows]
        if not uuids:
            return []
        leg_rows = connection.execute(
            select(legs).where(legs.c.conversation_uuid.in_(uuids)).order_by(legs.c.start_time, legs.c.uuid)
        ).mappings().all()
        answer_rows = connection.execute(
            select(answers).where(answers.c.conversation_uuid.in_(uuids)).order_by(answers.c.id)
        ).mappings().all()
        events_by_leg: dict[str, list[dict]] = {}
        if with_events:
            event_rows = connection.execute(
                select(events)
                .where(events.c.conversation_uuid.in_(uuids) | events.c.leg_uuid.in_([leg["uuid"] for leg in leg_rows]))
                .order_by(events.c.timestamp, events.c.id)
            ).mappings().all()
            for row in event_rows:
                events_by_leg.setdefault(row["leg_uuid"] or "", []).append(
                    {
                        "status": row["kind"],
                        "timestamp": row["timestamp"],
                        "received_at": row["received_at"],
                        "verified": row["verified"],
                        "payload": json.loads(row["payload"]),
                    }
                )
        calls = []
        for row in rows:
            uuid = row["conversation_uuid"]
            call_legs = [_leg_json(leg) for leg in leg_rows if leg["conversation_uuid"] == uuid]
            if with_events:
                for leg in call_legs:
                    leg["events"] = events_by_leg.get(leg["uuid"], [])
            call = {
                "conversation_uuid": uuid,
                "started_at": row["started_at"],
                "updated_at": row["updated_at"],
                "in_progress": any(leg["status"] in IN_PROGRESS for leg in call_legs),
                "legs": call_legs,
                "answers": [_answer_json(answer) for answer in answer_rows if answer["conversation_uuid"] == uuid],
                "total_price": total_price(leg["price"] for leg in call_legs),
            }
            if with_events:
                call["other_events"] = events_by_leg.get("", [])
            calls.append(call)
        return calls


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


def _fit(table: Table, row: dict) -> dict:
    """The row with text cut to its column's length: PostgreSQL refuses longer values, and a webhook may send any."""
    limits = _LENGTHS[table.name]
    return {key: (value[: limits[key]] if isinstance(value, str) and key in limits else value) for key, value in row.items()}


_LENGTHS = {
    table.name: {column.name: column.type.length for column in table.columns if getattr(column.type, "length", None)}
    for table in metadata.tables.values()
}


def _leg_json(row) -> dict:
    return {
        "uuid": row["uuid"],
        "direction": row["direction"],
        "from": row["from_number"],
        "to": row["to_number"],
        "status": row["status"],
        "duration": row["duration"],
        "rate": row["rate"],
        "price": row["price"],
        "network": row["network"],
        "start_time": row["start_time"],
        "answer_time": row["answer_time"],
        "end_time": row["end_time"],
        "detail": row["detail"],
        "reason": row["reason"],
        "machine_detection": row["machine_detection"],
    }


def _answer_json(row) -> dict:
    return {
        "received_at": row["received_at"],
        "route": row["route"],
        "caller": row["caller"],
        "requested": row["requested"],
        "callee": row["callee"],
        "connected": row["connected"],
        "reason": row["reason"],
        "verified": row["verified"],
    }


def _digits_or_text(number: str) -> str:
    digits = "".join(character for character in number if character.isdigit())
    return digits or number.strip()


def _encode_cursor(started_at: str, uuid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([started_at, uuid]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        started_at, uuid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(started_at), str(uuid)
    except (ValueError, TypeError):
        raise ValueError("the cursor is not one this server gave out; use the 'next' value of a previous page") from None


def _brief(error: Exception) -> str:
    """One line about a database error, without the SQL statement or parameters SQLAlchemy appends."""
    message = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}".strip()
