"""Call-log retention: whole conversations whose latest activity is older than a cutoff, removed in chunks.

A conversation's latest activity is conversations.updated_at: the newest received_at of its events and answer
decisions. Each chunk is one short transaction. On PostgreSQL it takes the conversations' row locks first and
skips any that are locked, as the committer takes a batch's conversations first: a conversation receiving an
event is never pruned (it is skipped, and then no longer old), two servers pruning at once share the work, and
no prune waits for a batch or deadlocks with one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, exists, func, select, text
from sqlalchemy.engine import Connection

from calllog.schema import Database, StorageError, answers, brief, call_actions, conversations, deliveries, events, legs
from config import describe_age
from events import utc_timestamp
from runtime.logs import LOGGER_NAME

PRUNE_CHUNK = 200  # conversations (or loose rows) per transaction
FIRST_PRUNE_DELAY = 60.0  # seconds after the writer starts: a short-lived `flask` command never prunes
PRUNE_INTERVAL = 3600.0
# A prune waits this long at most for a row another transaction holds (PostgreSQL), then fails and is retried.
LOCK_TIMEOUT = "5s"

log = logging.getLogger(f"{LOGGER_NAME}.retention")


@dataclass(frozen=True)
class Pruned:
    """How many rows a prune removed (or would remove)."""

    conversations: int = 0
    events: int = 0
    legs: int = 0
    answers: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(*(mine + theirs for mine, theirs in zip(astuple(self), astuple(other), strict=True)))

    def summary(self) -> str:
        """ "12 calls (340 events, 24 legs, 12 answers)"."""
        counts = [(self.events, "event"), (self.legs, "leg"), (self.answers, "answer")]
        details = ", ".join(_counted(count, noun) for count, noun in counts)
        return f"{_counted(self.conversations, 'call')} ({details})"


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def cutoff_before(age: timedelta, now: float) -> str:
    """The received_at before which rows are older than `age` at `now` (epoch seconds), as the rows write it."""
    return utc_timestamp(now - age.total_seconds())


def described(removed: Pruned, age: timedelta, cutoff: str) -> str:
    """ "12 calls (340 events, 24 legs, 12 answers) older than 30 days (before 2026-10-27 04:00 UTC)"."""
    before = datetime.strptime(cutoff, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{removed.summary()} older than {describe_age(age)} (before {before})"


@contextlib.contextmanager
def _transaction(database: Database):
    """One writing transaction (Database.connect) that waits at most LOCK_TIMEOUT for a row lock (PostgreSQL)."""
    with database.connect(writing=True) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        yield connection


def prune_step(database: Database, cutoff: str, limit: int = PRUNE_CHUNK) -> tuple[Pruned, bool]:
    """Remove up to `limit` conversations last active before `cutoff` with all their rows, and then, if fewer
    were left, up to `limit` old rows of no conversation; in one transaction. Returns what was removed and
    whether more may be left. Raises StorageError."""
    with _transaction(database) as connection:
        removed = _prune_conversations(connection, cutoff, limit)
        if removed.conversations == limit:
            return removed, True
        loose, more = _prune_loose_rows(connection, cutoff, limit)
        return removed + loose, more


def prune(database: Database, cutoff: str, limit: int = PRUNE_CHUNK) -> Pruned:
    """Remove everything last active before `cutoff`, a chunk per transaction. Raises StorageError."""
    removed, more = Pruned(), True
    while more:
        step, more = prune_step(database, cutoff, limit)
        removed += step
    return removed


def _prune_conversations(connection: Connection, cutoff: str, limit: int) -> Pruned:
    old = (
        select(conversations.c.conversation_uuid)
        .where(conversations.c.updated_at < cutoff)
        .order_by(conversations.c.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    uuids = sorted(connection.execute(old).scalars())
    if not uuids:
        return Pruned()
    # Their legs locked in key order, as the committer locks legs (PostgreSQL; SQLite locks the whole database).
    connection.execute(
        select(legs.c.uuid).where(legs.c.conversation_uuid.in_(uuids)).order_by(legs.c.uuid).with_for_update()
    ).all()
    # The actions taken on those calls (CALL_CONTROL) go with them.
    connection.execute(delete(call_actions).where(call_actions.c.conversation_uuid.in_(uuids)))
    # Their deliveries to FORWARD_URL go with them: what a delivery sends is the event (or decision) being removed.
    keys = (
        select(events.c.event_key)
        .where(events.c.conversation_uuid.in_(uuids))
        .union_all(select(answers.c.answer_key).where(answers.c.conversation_uuid.in_(uuids)))
    )
    connection.execute(delete(deliveries).where(deliveries.c.webhook_id.in_(keys)))
    counts = [
        connection.execute(delete(table).where(table.c.conversation_uuid.in_(uuids))).rowcount
        for table in (events, legs, answers, conversations)
    ]
    return Pruned(conversations=counts[3], events=counts[0], legs=counts[1], answers=counts[2])


def _prune_loose_rows(connection: Connection, cutoff: str, limit: int) -> tuple[Pruned, bool]:
    """Old events and answer decisions of no conversation (an unreadable delivery, say), and the legs that
    only such events made."""
    old_events = connection.execute(
        select(events.c.id, events.c.leg_uuid)
        .where(events.c.conversation_uuid.is_(None), events.c.received_at < cutoff)
        .order_by(events.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    old_answers = connection.execute(
        select(answers.c.id)
        .where(answers.c.conversation_uuid.is_(None), answers.c.received_at < cutoff)
        .order_by(answers.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).scalars()
    answer_ids = list(old_answers)
    event_count = connection.execute(delete(events).where(events.c.id.in_([row.id for row in old_events]))).rowcount
    leg_uuids = sorted({row.leg_uuid for row in old_events if row.leg_uuid})
    leg_count = connection.execute(
        delete(legs).where(
            legs.c.uuid.in_(leg_uuids),
            legs.c.conversation_uuid.is_(None),
            ~exists().where(events.c.leg_uuid == legs.c.uuid),
        )
    ).rowcount
    answer_count = connection.execute(delete(answers).where(answers.c.id.in_(answer_ids))).rowcount
    more = len(old_events) == limit or len(answer_ids) == limit
    return Pruned(events=event_count, legs=leg_count, answers=answer_count), more


def count_prunable(database: Database, cutoff: str) -> Pruned:
    """What `prune` would remove at `cutoff` now, removing nothing. Raises StorageError."""
    old = select(conversations.c.conversation_uuid).where(conversations.c.updated_at < cutoff)

    def belongs(table):
        loose = table.c.conversation_uuid.is_(None) & (table.c.received_at < cutoff)
        return table.c.conversation_uuid.in_(old) | loose

    not_old_loose = ~(events.c.conversation_uuid.is_(None) & (events.c.received_at < cutoff))
    loose_leg = legs.c.conversation_uuid.is_(None) & ~exists().where(events.c.leg_uuid == legs.c.uuid, not_old_loose)
    loose_leg &= exists().where(events.c.leg_uuid == legs.c.uuid)
    queries = [
        select(func.count()).select_from(old.subquery()),
        select(func.count()).where(belongs(events)),
        select(func.count()).where(legs.c.conversation_uuid.in_(old) | loose_leg),
        select(func.count()).where(belongs(answers)),
    ]
    with database.connect() as connection:
        return Pruned(*(connection.execute(query).scalar_one() for query in queries))


class BackgroundPrune:
    """The writer's pruning: a run a minute after start, then every `interval` seconds, done one chunk at a
    time between the writer's batches, so a commit never waits for more than one chunk."""

    def __init__(
        self,
        database: Database,
        retention: timedelta,
        clock=time.time,
        first_delay: float = FIRST_PRUNE_DELAY,
        interval: float = PRUNE_INTERVAL,
        chunk: int = PRUNE_CHUNK,
    ):
        self.database = database
        self.retention = retention
        self.clock = clock
        self.interval = interval
        self.chunk = chunk
        self.next_run = clock() + first_delay
        self._cutoff: str | None = None  # the cutoff of the run in progress
        self._removed = Pruned()

    def seconds_until_due(self) -> float:
        """How long the writer may wait for messages before the next chunk is due (0 while a run goes on)."""
        return max(0.0, self.next_run - self.clock())

    def step(self) -> None:
        """Prune one chunk if a run is due or going on; log what a finished run removed. Never raises: a
        failure is logged, and the next run tries again."""
        now = self.clock()
        if now < self.next_run:
            return
        if self._cutoff is None:
            self._cutoff, self._removed = cutoff_before(self.retention, now), Pruned()
        try:
            removed, more = prune_step(self.database, self._cutoff, self.chunk)
        except Exception as error:
            message = str(error) if isinstance(error, StorageError) else brief(error)
            log.warning("call-log pruning failed (%s); it tries again in %d s", message, self.interval)
            self._end_run(now)
            return
        self._removed += removed
        if not more:
            log.info("call log pruned: removed %s", described(self._removed, self.retention, self._cutoff))
            self._end_run(now)

    def _end_run(self, now: float) -> None:
        self._cutoff = None
        self.next_run = now + self.interval
