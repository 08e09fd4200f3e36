"""The call log's tables, their migrations, and the database they live in (SQLite or PostgreSQL)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url

SCHEMA_VERSION = 9
# How every SQLite write transaction starts: taking the write lock up front, so two writers never deadlock
# upgrading their read locks.
SQLITE_BEGIN = "BEGIN IMMEDIATE"
# The execution option that marks a transaction as only reading (Database.connect).
READING = "call_log_reading"
# Several servers may start at once against one PostgreSQL database: they migrate one at a time.
MIGRATION_LOCK = 804210
CONNECT_SECONDS = 5

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
conversations = Table(
    "conversations",
    metadata,
    Column("conversation_uuid", String(100), primary_key=True),
    Column("started_at", String(32), nullable=False, index=True),
    # Indexed (version 3) for retention: the conversations whose latest activity is older than a cutoff.
    Column("updated_at", String(32), nullable=False, index=True),
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
    # Why a delivery's body could not be read into fields (stored as received all the same); version 2.
    Column("problem", Text),
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
    # Where the leg's fold has got to (version 9; calllog.legs.FOLD_FIELDS): none makes the next event fold it again.
    Column("fold_timestamp", String(64)),
    Column("fold_event_id", Integer),
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
    # One decision per key (version 4): a signed request's JWT id (jti), so a replayed token is never recorded
    # twice; else one made for the decision, so a batch the worker sends again is stored once.
    Column("answer_key", String(100)),
    Index("ix_answers_answer_key", "answer_key", unique=True),
    # Whether the NCCO recorded the call (version 6): its recording's webhook is then expected.
    Column("recorded", Boolean),
    # The answer request's region_url (version 7): the Voice API host that serves this call, where it is acted on.
    Column("region_url", String(300)),
)
# The recordings (version 6): one row per recording_uuid, made by the committer in the transaction that stores the
# recording's webhook, and carried to the store by the recordings job (outbound/recordings.py). A row is the job:
# `status` waiting until stored, or failed / refused with `last_error`. Retention (the job's, not calllog.retention)
# removes a row only after its file, so no stored file is ever left without its row.
recordings = Table(
    "recordings",
    metadata,
    Column("recording_uuid", String(100), primary_key=True),
    Column("conversation_uuid", String(100), index=True),
    Column("recording_url", Text, nullable=False),
    Column("size", BigInteger),  # as the webhook says
    Column("start_time", String(64)),
    Column("end_time", String(64)),
    Column("received_at", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),  # Unix time: when it is next tried (waiting only)
    Column("lease_until", Float),  # Unix time: a job that took it holds it until then
    Column("lease_owner", String(100)),  # which process took it: host:pid of its serve.py (recordings.RUNNER)
    Column("last_error", Text),
    Column("stored_at", String(32)),
    Column("location", Text),  # where it is: a file's path, or s3://bucket/key
    Column("sha256", String(64)),
    Column("bytes", BigInteger),
    Index("ix_recordings_due", "status", "next_attempt_at"),
)
# Client SDK users this server has seen (version 5): made at Vonage by CLIENT_CREATE_USERS (so a second login asks
# Vonage nothing), and when a login token was last issued here (flask users shows it). Not the call log's own
# history, so retention leaves it alone.
client_users = Table(
    "client_users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("vonage_id", String(100)),
    Column("created_at", String(32)),  # when this server created the user at Vonage; None if it did not
    Column("last_token_at", String(32)),
)

# What was asked of Vonage about a call in progress (version 7: CALL_CONTROL), accepted or refused, with who asked
# and what Vonage answered: the call's timeline shows it. One row an attempt; retention removes it with its call.
call_actions = Table(
    "call_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_uuid", String(100), index=True),
    Column("leg_uuid", String(100), nullable=False),
    Column("action", String(16), nullable=False),
    Column("detail", Text),  # the text said, the digits, the destination
    Column("requested_at", String(32), nullable=False),
    Column("requested_by", String(100)),  # the client's address, or "command line"
    Column("outcome", String(16), nullable=False),  # ACTION_OUTCOMES in calllog/call_actions.py
    Column("vonage_status", Integer),
    Column("result", Text),  # what came of it, in one line (Vonage's reason when it refused)
)
# Forwarding (version 8, docs/forwarding.md): one row per stored event (or answer decision) and endpoint of
# FORWARD_URL, inserted by the committer in the transaction that stores the event, so none is committed without its
# deliveries. `webhook_id` is the event's key (events.event_key, answers.answer_key), the same on every attempt;
# `kind` says which table it is in (calllog.deliveries.SOURCES). Times are Unix seconds. A delivery is claimed by
# setting `lease_until` (and `lease_token`, which its outcome must match), so one server makes each attempt.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(2000), nullable=False),
    Column("webhook_id", String(100), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered, failed, stopped
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("lease_token", String(32)),
    Column("last_status", Integer),  # the receiver's last HTTP status; None: no answer
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_deliveries_endpoint_webhook_id", "endpoint", "webhook_id", unique=True),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_webhook_id", "webhook_id"),
)
# An endpoint that answered 410 Gone (version 8): nothing more is sent there until `flask forward replay --endpoint`.
forward_endpoints = Table(
    "forward_endpoints",
    metadata,
    Column("endpoint", String(2000), primary_key=True),
    Column("stopped_at", Float),
    Column("stopped_because", Text),
)


def _create_tables(connection) -> None:
    for table in (conversations, events, legs, answers):
        table.create(connection, checkfirst=True)


def _add_event_problem(connection) -> None:
    # A database created at version 2 already has the column (tables are created as defined above).
    if "problem" not in {column["name"] for column in inspect(connection).get_columns("events")}:
        connection.execute(text("ALTER TABLE events ADD COLUMN problem TEXT"))


def _index_conversation_activity(connection) -> None:
    # A database created at version 3 already has the index (tables are created as defined above).
    connection.execute(text("CREATE INDEX IF NOT EXISTS ix_conversations_updated_at ON conversations (updated_at)"))


def _add_client_users(connection) -> None:
    client_users.create(connection, checkfirst=True)


def _add_answer_key(connection) -> None:
    # A database created at version 4 already has the column and its index.
    if "answer_key" not in {column["name"] for column in inspect(connection).get_columns("answers")}:
        connection.execute(text("ALTER TABLE answers ADD COLUMN answer_key VARCHAR(100)"))
    connection.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ix_answers_answer_key ON answers (answer_key)"))


def _add_recordings(connection) -> None:
    # A database created at version 6 already has the column and the table.
    if "recorded" not in {column["name"] for column in inspect(connection).get_columns("answers")}:
        connection.execute(text("ALTER TABLE answers ADD COLUMN recorded BOOLEAN"))
    recordings.create(connection, checkfirst=True)


def _add_call_control(connection) -> None:
    # A database created at version 7 already has both (tables are created as defined above).
    if "region_url" not in {column["name"] for column in inspect(connection).get_columns("answers")}:
        connection.execute(text("ALTER TABLE answers ADD COLUMN region_url VARCHAR(300)"))
    call_actions.create(connection, checkfirst=True)


def _add_deliveries(connection) -> None:
    deliveries.create(connection, checkfirst=True)
    forward_endpoints.create(connection, checkfirst=True)


def _add_leg_folds(connection) -> None:
    # A database created at version 9 already has both; the legs of an older one are folded again at their next event.
    present = {column["name"] for column in inspect(connection).get_columns("legs")}
    for name, kind in (("fold_timestamp", "VARCHAR(64)"), ("fold_event_id", "INTEGER")):
        if name not in present:
            connection.execute(text(f"ALTER TABLE legs ADD COLUMN {name} {kind}"))


# version -> the step that brings a database from the version before to it.
MIGRATIONS = {
    1: _create_tables,
    2: _add_event_problem,
    3: _index_conversation_activity,
    4: _add_answer_key,
    5: _add_client_users,
    6: _add_recordings,
    7: _add_call_control,
    8: _add_deliveries,
    9: _add_leg_folds,
}

# Each table's text columns with a length, and that length: PostgreSQL refuses longer values.
COLUMN_LENGTHS = {
    table.name: {column.name: column.type.length for column in table.columns if getattr(column.type, "length", None)}
    for table in metadata.tables.values()
}


class StorageError(Exception):
    """The database could not store or read something; the message is safe to show."""

    # What a 503 for it says in Retry-After: an event Vonage sends again, a page or script that reads again.
    retry_after = 5


def brief(error: Exception) -> str:
    """One line about a database error, without the SQL statement or parameters SQLAlchemy appends."""
    message = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}".strip()


def database_engine(url: str, sync_each_commit: bool = True) -> Engine:
    """An engine for DATABASE_URL: SQLite in WAL mode with immediate write locks, or PostgreSQL via psycopg.

    `sync_each_commit` False (the background jobs' own state: claims, outcomes) commits to SQLite without waiting
    for the disk (synchronous=NORMAL: a commit survives a crash of the process, and only a power cut may undo the
    last ones, which then run again). The writer keeps FULL: an acknowledged event is on disk."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A database that does not answer is an error within seconds, not a request that waits forever.
        return create_engine(
            parsed, pool_pre_ping=True, pool_size=8, max_overflow=8, connect_args={"connect_timeout": CONNECT_SECONDS}
        )
    engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection, _record):
        # Transactions begin only with SQLITE_BEGIN (SQLAlchemy's below, the committer's own), so every
        # writer locks up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL" if sync_each_commit else "PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin_immediate(connection):
        # A reader's transaction (Database.connect) takes no lock: in WAL mode it reads a snapshot beside the writer.
        reading = connection.get_execution_options().get(READING, False)
        connection.exec_driver_sql("BEGIN" if reading else SQLITE_BEGIN)

    return engine


def migrate(engine: Engine) -> int:
    """Bring the database's schema to SCHEMA_VERSION, one step at a time; return the version it is at."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        schema_version.create(connection, checkfirst=True)
        current = connection.execute(select(func.max(schema_version.c.version))).scalar() or 0
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"the database is at schema version {current}, newer than this server's {SCHEMA_VERSION}; "
                "upgrade the server"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](connection)
            connection.execute(schema_version.delete())
            connection.execute(schema_version.insert().values(version=version))
        return SCHEMA_VERSION


class Database:
    """One call-log database: its engine, and its schema brought up to date once per process."""

    def __init__(self, url: str, sync_each_commit: bool = True):
        self.url = url
        self.engine = database_engine(url, sync_each_commit)
        self._ready = False
        self._lock = threading.Lock()
        database = self.engine.url.database
        # The SQLite database's file, or None for PostgreSQL and in-memory SQLite.
        self.sqlite_file = database if self.backend == "sqlite" and database and database != ":memory:" else None

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def ensure_schema(self) -> None:
        """Create or migrate the schema if not done yet; raise StorageError if the database is unreachable."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                if self.sqlite_file is not None:
                    Path(self.sqlite_file).parent.mkdir(parents=True, exist_ok=True)
                migrate(self.engine)
            except StorageError:
                raise
            except Exception as error:
                raise StorageError(f"cannot prepare the {self.backend} database: {brief(error)}") from None
            self._ready = True

    @contextlib.contextmanager
    def connect(self, writing: bool = False) -> Iterator[Connection]:
        """A connection in one transaction, committed at the end; any failure becomes StorageError, in one line.

        On SQLite a reading transaction takes no lock, so a long read (the page's summary) never holds up the
        writer's commits; a writing one takes the write lock up front (SQLITE_BEGIN)."""
        try:
            self.ensure_schema()
            with self.engine.connect() as connection:
                connection.execution_options(**{READING: not writing})
                with connection.begin():
                    yield connection
        except StorageError:
            raise
        except Exception as error:
            raise StorageError(f"the {self.backend} database failed: {brief(error)}") from None

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
