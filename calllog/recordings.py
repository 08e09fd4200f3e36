"""The recordings table as the recordings job (outbound/recordings.py), the API, the page and `flask recordings` use
it: a row per recording, made when its webhook is stored (calllog/committer.py), and the job's state in it.

A job is taken with a lease: an UPDATE that succeeds only while nobody else holds it, so with several servers on one
PostgreSQL database each attempt is made by one of them, and a lease left by a process that died (kill -9) is taken
again when it runs out, or at once by the next run on the same machine (`release_leases_of_the_dead`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, not_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from calllog.rows import WAITING
from calllog.schema import Database, answers, conversations, legs, recordings
from calllog.schema import deliveries as deliveries_table
from events import IN_PROGRESS, epoch_seconds

STORED, FAILED, REFUSED = "stored", "failed", "refused"
STATUSES = (WAITING, STORED, FAILED, REFUSED)
# Who this process is, in a lease it takes: its machine and its pid (a lease of a pid that is gone is freed).
RUNNER = f"{socket.gethostname()[:60]}:{os.getpid()}"


@dataclass(frozen=True)
class Recording:
    """One recordings row."""

    recording_uuid: str
    conversation_uuid: str | None
    recording_url: str
    size: int | None
    start_time: str | None
    end_time: str | None
    received_at: str
    status: str
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    stored_at: str | None
    location: str | None
    sha256: str | None
    bytes: int | None

    @classmethod
    def of(cls, row) -> Recording:
        return cls(**{name: row._mapping[name] for name in cls.__dataclass_fields__})

    def as_json(self) -> dict:
        """The recording as /api/calls gives it."""
        return {
            "recording_uuid": self.recording_uuid,
            "status": self.status,
            "size": self.bytes if self.bytes is not None else self.size,
            "duration": duration_seconds(self.start_time, self.end_time),
            "start_time": self.start_time,
            "end_time": self.end_time,
            "attempts": self.attempts,
            "error": self.last_error if self.status != STORED else None,
            "received_at": self.received_at,
            "stored_at": self.stored_at,
            "location": self.location,
            "sha256": self.sha256,
        }


def duration_seconds(start: str | None, end: str | None) -> int | None:
    """Whole seconds between a recording's start_time and end_time (ISO 8601), or None."""
    first, last = epoch_seconds(start), epoch_seconds(end)
    if first is None or last is None or last < first:
        return None
    return round(last - first)


class Recordings:
    """The recordings table, on one database. Every method raises StorageError when the database fails."""

    def __init__(self, database: Database):
        self.database = database

    def take_due(
        self, now: float, lease_seconds: float, runner: str = RUNNER, only: str | None = None
    ) -> Recording | None:
        """Take the recording that is due soonest (waiting, its time come, nobody holding it), or `only` that one:
        leased to `runner` until now + lease_seconds, its attempts counted. None when none is due."""
        free = or_(recordings.c.lease_until.is_(None), recordings.c.lease_until < now)
        due = and_(recordings.c.status == WAITING, recordings.c.next_attempt_at <= now, free)
        if only is not None:
            due = and_(due, recordings.c.recording_uuid == only)
        # Looked for first in a reading transaction: polled every second, it must not take SQLite's write lock
        # (which the writer's commits wait for) when nothing is due.
        with self.database.connect() as connection:
            candidates = (
                connection.execute(
                    select(recordings.c.recording_uuid).where(due).order_by(recordings.c.next_attempt_at).limit(5)
                )
                .scalars()
                .all()
            )
        if not candidates:
            return None
        with self.database.connect(writing=True) as connection:
            for uuid in candidates:
                taken = connection.execute(
                    update(recordings)
                    .where(recordings.c.recording_uuid == uuid, due)
                    .values(lease_until=now + lease_seconds, lease_owner=runner, attempts=recordings.c.attempts + 1)
                )
                if taken.rowcount == 1:
                    row = connection.execute(select(recordings).where(recordings.c.recording_uuid == uuid)).one()
                    return Recording.of(row)
        return None

    def renew(self, uuid: str, until: float, runner: str = RUNNER) -> None:
        """Hold a recording longer while it is still being fetched."""
        with self.database.connect(writing=True) as connection:
            connection.execute(
                update(recordings)
                .where(recordings.c.recording_uuid == uuid, recordings.c.lease_owner == runner)
                .values(lease_until=until)
            )

    def release_leases_of_the_dead(self, alive) -> int:
        """Free the leases of this machine's runners that are gone (`alive(pid)` says False): their downloads were
        cut off, and are taken again now rather than when the lease runs out."""
        prefix = f"{socket.gethostname()[:60]}:"
        with self.database.connect(writing=True) as connection:
            held = connection.execute(
                select(recordings.c.recording_uuid, recordings.c.lease_owner).where(
                    recordings.c.status == WAITING, recordings.c.lease_owner.like(prefix + "%")
                )
            ).all()
            dead = [uuid for uuid, owner in held if not _owner_alive(owner, prefix, alive)]
            if dead:
                connection.execute(
                    update(recordings)
                    .where(recordings.c.recording_uuid.in_(dead))
                    .values(lease_until=None, lease_owner=None)
                )
            return len(dead)

    def finish(self, uuid: str, status: str, runner: str = RUNNER, deliveries: list[dict] = (), **values) -> None:
        """End this runner's attempt: stored (with location, sha256, bytes, stored_at), waiting again (with
        next_attempt_at and last_error), failed or refused (with last_error). `deliveries` (rows of the deliveries
        table: FORWARD_URL's, for a recording stored) are made in the same transaction, once each."""
        with self.database.connect(writing=True) as connection:
            finished = connection.execute(
                update(recordings)
                .where(recordings.c.recording_uuid == uuid, recordings.c.lease_owner == runner)
                .values(status=status, lease_until=None, lease_owner=None, **values)
            )
            if deliveries and finished.rowcount == 1:
                insert = (sqlite_insert if connection.dialect.name == "sqlite" else postgresql_insert)(deliveries_table)
                connection.execute(insert.on_conflict_do_nothing(index_elements=["endpoint", "webhook_id"]), deliveries)

    def fetch_again(self, uuid: str, now: float) -> Recording | None:
        """Make a recording due now, whatever its state (flask recordings fetch); None for an unknown one."""
        with self.database.connect(writing=True) as connection:
            changed = connection.execute(
                update(recordings)
                .where(recordings.c.recording_uuid == uuid)
                .values(status=WAITING, next_attempt_at=now, lease_until=None, lease_owner=None)
            )
            if changed.rowcount != 1:
                return None
            return Recording.of(connection.execute(select(recordings).where(recordings.c.recording_uuid == uuid)).one())

    def get(self, uuid: str) -> Recording | None:
        with self.database.connect() as connection:
            row = connection.execute(select(recordings).where(recordings.c.recording_uuid == uuid)).first()
        return Recording.of(row) if row is not None else None

    def listed(self, status: str | None = None, limit: int = 100) -> list[Recording]:
        """The latest recordings, newest first (of one status, when given)."""
        query = select(recordings).order_by(recordings.c.received_at.desc()).limit(limit)
        if status is not None:
            query = query.where(recordings.c.status == status)
        with self.database.connect() as connection:
            return [Recording.of(row) for row in connection.execute(query)]

    def missed(self, ended_before: str, limit: int = 100) -> list[dict]:
        """Calls recorded (their answer's NCCO had a record action) whose recording's webhook has not come, their
        latest activity before `ended_before`: its webhook may have been lost."""
        query = (
            select(conversations.c.conversation_uuid, conversations.c.started_at, conversations.c.updated_at)
            .where(*_missing_webhook(ended_before))
            .order_by(conversations.c.updated_at.desc())
            .limit(limit)
        )
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def count_missed(self, ended_before: str) -> int:
        """How many calls `missed` would list, however many."""
        query = select(func.count()).select_from(conversations).where(*_missing_webhook(ended_before))
        with self.database.connect() as connection:
            return connection.execute(query).scalar_one()

    def summary(self, not_stored_since: str) -> dict:
        """For /metrics: recordings by status, bytes stored, the oldest not stored yet (its received_at) and how many
        not stored were received before `not_stored_since` (at risk)."""
        with self.database.connect() as connection:
            by_status = dict(
                connection.execute(select(recordings.c.status, func.count()).group_by(recordings.c.status)).all()
            )
            stored_bytes = connection.execute(
                select(func.coalesce(func.sum(recordings.c.bytes), 0)).where(recordings.c.status == STORED)
            ).scalar_one()
            pending = recordings.c.status.in_((WAITING, FAILED))
            oldest = connection.execute(select(func.min(recordings.c.received_at)).where(pending)).scalar_one()
            at_risk = connection.execute(
                select(func.count()).where(pending, recordings.c.received_at < not_stored_since)
            ).scalar_one()
        return {"by_status": by_status, "bytes": int(stored_bytes), "oldest_pending": oldest, "at_risk": at_risk}

    def to_remove(self, received_before: str | None, limit: int = 100) -> list[Recording]:
        """Recordings whose call is gone from the call log (CALL_LOG_RETENTION), or received before
        `received_before` (RECORDING_RETENTION): their file is removed first, then the row (`remove`)."""
        orphan = recordings.c.conversation_uuid.is_not(None) & not_(
            select(conversations.c.conversation_uuid)
            .where(conversations.c.conversation_uuid == recordings.c.conversation_uuid)
            .exists()
        )
        condition = orphan if received_before is None else or_(orphan, recordings.c.received_at < received_before)
        with self.database.connect() as connection:
            rows = connection.execute(select(recordings).where(condition).limit(limit))
            return [Recording.of(row) for row in rows]

    def remove(self, uuid: str) -> None:
        with self.database.connect(writing=True) as connection:
            connection.execute(delete(recordings).where(recordings.c.recording_uuid == uuid))


def _missing_webhook(ended_before: str) -> tuple:
    """The conditions on a conversation that was recorded, has ended (no leg in progress) before `ended_before`, and
    has no recording's webhook."""
    recorded = select(answers.c.conversation_uuid).where(answers.c.recorded.is_(True))
    has_recording = select(recordings.c.recording_uuid).where(
        recordings.c.conversation_uuid == conversations.c.conversation_uuid
    )
    live = select(legs.c.uuid).where(
        legs.c.conversation_uuid == conversations.c.conversation_uuid, legs.c.status.in_(sorted(IN_PROGRESS))
    )
    return (
        conversations.c.conversation_uuid.in_(recorded),
        conversations.c.updated_at < ended_before,
        not_(has_recording.exists()),
        not_(live.exists()),
    )


def recordings_of(connection, uuids: list[str]) -> dict[str, list[dict]]:
    """Each conversation's recordings as the API gives them, read on a connection already open."""
    found: dict[str, list[dict]] = {}
    query = select(recordings).where(recordings.c.conversation_uuid.in_(uuids)).order_by(recordings.c.received_at)
    for row in connection.execute(query):
        recording = Recording.of(row)
        found.setdefault(recording.conversation_uuid, []).append(recording.as_json())
    return found


def _owner_alive(owner: str | None, prefix: str, alive) -> bool:
    pid = (owner or "").removeprefix(prefix)
    return not pid.isdigit() or alive(int(pid))
