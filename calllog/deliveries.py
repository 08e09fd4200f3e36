"""Deliveries to the user's own app (FORWARD_URL): the rows the committer adds beside each new event, and the
forwarder's work on them: claimed with a lease, their outcome recorded, their messages read, replayed, summed up.

What waits to be sent lives here, in the database, never in a queue in memory: a server that stops or is killed
loses nothing, and with several servers on one PostgreSQL database each attempt is made by the one that claimed it.
"""

from __future__ import annotations

import json
import uuid
from typing import NamedTuple

from sqlalchemy import and_, func, literal, or_, select, update

from calllog.recordings import Recording
from calllog.schema import Database, answers, deliveries, events, forward_endpoints, legs, recordings

# The types of message sent, each the `kind` of its deliveries: an event, an answer decision, and a recording once
# stored (its webhook id is its recording_uuid, its delivery made by the recordings job when it stores it).
EVENT_TYPE = "call.event.completed"
ANSWER_TYPE = "call.answer.decided"
RECORDING_TYPE = "call.recording.stored"
TEST_TYPE = "forward.test"  # flask forward test: sent at once, never stored

PENDING, DELIVERED, FAILED, STOPPED = "pending", "delivered", "failed", "stopped"
STATUSES = (PENDING, DELIVERED, FAILED, STOPPED)
ANSWER_DECISIONS = "answer"  # what FORWARD_EVENTS calls the answer decisions (config.ANSWER_DECISIONS)
STORED_RECORDINGS = "recording"  # and the recordings once stored (config.STORED_RECORDINGS)


class Forwarding(NamedTuple):
    """What the committer forwards: to which endpoints, and which event kinds (None: every one, and the answer
    decisions)."""

    endpoints: tuple[str, ...]
    kinds: frozenset[str] | None = None

    def wants(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    @property
    def wants_answers(self) -> bool:
        return self.wants(ANSWER_DECISIONS)

    @property
    def wants_recordings(self) -> bool:
        return self.wants(STORED_RECORDINGS)


def forwarding(endpoints: tuple[str, ...], kinds: frozenset[str] | None) -> Forwarding | None:
    """The committer's forwarding for these settings' values, or None when nothing is forwarded."""
    return Forwarding(tuple(endpoints), kinds) if endpoints else None


DELIVERY_COLUMNS = (
    "endpoint",
    "webhook_id",
    "kind",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


def delivery_rows(forwarding: Forwarding, messages: list[tuple[str, str]], now: float) -> list[tuple]:
    """The deliveries rows (DELIVERY_COLUMNS) of new messages, (webhook id, type) each: one per endpoint, due now."""
    return [
        (endpoint, webhook_id, kind, PENDING, 0, now, now, now)
        for webhook_id, kind in messages
        for endpoint in forwarding.endpoints
    ]


class Claimed(NamedTuple):
    """A delivery this forwarder holds until `lease_until`: its outcome is recorded only with its `lease_token`."""

    id: int
    endpoint: str
    webhook_id: str
    kind: str
    attempts: int  # counting the one now being made
    created_at: float
    lease_token: str


class Outcome(NamedTuple):
    """What an attempt left a delivery as: its status, when to try next (pending), what the receiver said."""

    status: str
    next_attempt_at: float
    last_status: int | None
    last_error: str | None


def _due(now: float):
    lease_free = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until <= now)
    return and_(deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now, lease_free)


class DeliveryStore:
    """The forwarder's and `flask forward`'s statements over the deliveries table; each raises StorageError."""

    def __init__(self, database: Database):
        self.database = database

    def claim(self, endpoint: str, limit: int, now: float, lease_seconds: float) -> list[Claimed]:
        """Take up to `limit` of the endpoint's due deliveries, oldest due first, until now + lease_seconds.

        One statement: on PostgreSQL the rows another server is claiming are skipped (SKIP LOCKED), and the
        condition is checked again on each row it locks, so two servers never hold one delivery at once; SQLite's
        write lock makes it atomic there."""
        token = uuid.uuid4().hex
        chosen = (
            select(deliveries.c.id)
            .where(deliveries.c.endpoint == endpoint, _due(now))
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(deliveries)
            .where(deliveries.c.id.in_(chosen.scalar_subquery()), _due(now))
            .values(
                lease_until=now + lease_seconds,
                lease_token=token,
                attempts=deliveries.c.attempts + 1,
                updated_at=now,
            )
            .returning(
                deliveries.c.id,
                deliveries.c.endpoint,
                deliveries.c.webhook_id,
                deliveries.c.kind,
                deliveries.c.attempts,
                deliveries.c.created_at,
            )
        )
        with self.database.connect(writing=True) as connection:
            rows = connection.execute(statement).all()
        return sorted((Claimed(*row, token) for row in rows), key=lambda claimed: claimed.id)

    def record(self, claimed: Claimed, outcome: Outcome, now: float) -> bool:
        """Store an attempt's outcome; False when the lease was lost (expired and claimed again) meanwhile."""
        statement = (
            update(deliveries)
            .where(deliveries.c.id == claimed.id, deliveries.c.lease_token == claimed.lease_token)
            .values(
                status=outcome.status,
                next_attempt_at=outcome.next_attempt_at,
                lease_until=None,
                lease_token=None,
                last_status=outcome.last_status,
                last_error=outcome.last_error,
                updated_at=now,
            )
        )
        with self.database.connect(writing=True) as connection:
            return connection.execute(statement).rowcount == 1

    def stop_endpoint(self, endpoint: str, because: str, now: float) -> int:
        """Stop sending to `endpoint` (it answered 410 Gone): remember why, and stop its pending deliveries."""
        with self.database.connect(writing=True) as connection:
            known = connection.execute(
                select(forward_endpoints.c.endpoint).where(forward_endpoints.c.endpoint == endpoint)
            ).first()
            values = {"stopped_at": now, "stopped_because": because}
            if known is None:
                connection.execute(forward_endpoints.insert().values(endpoint=endpoint, **values))
            else:
                connection.execute(
                    update(forward_endpoints).where(forward_endpoints.c.endpoint == endpoint).values(**values)
                )
        return self.stop_pending(endpoint, now)

    def stop_pending(self, endpoint: str, now: float) -> int:
        """Mark the stopped endpoint's pending deliveries (new ones too) stopped; how many."""
        statement = (
            update(deliveries)
            .where(deliveries.c.endpoint == endpoint, _due(now))
            .values(status=STOPPED, updated_at=now, last_error="the endpoint answered 410 Gone")
        )
        with self.database.connect(writing=True) as connection:
            return connection.execute(statement).rowcount

    def stopped_endpoints(self) -> dict[str, tuple[float, str]]:
        """Each stopped endpoint: when, and why."""
        query = select(forward_endpoints).where(forward_endpoints.c.stopped_at.is_not(None))
        with self.database.connect() as connection:
            return {row.endpoint: (row.stopped_at, row.stopped_because) for row in connection.execute(query)}

    def oldest_pending(self, endpoints: tuple[str, ...]) -> dict[str, float]:
        """When each endpoint's oldest pending delivery was created (endpoints with none left out)."""
        query = (
            select(deliveries.c.endpoint, func.min(deliveries.c.created_at))
            .where(deliveries.c.status == PENDING, deliveries.c.endpoint.in_(endpoints))
            .group_by(deliveries.c.endpoint)
        )
        with self.database.connect() as connection:
            return dict(connection.execute(query).all())

    def endpoint_states(self, endpoints: tuple[str, ...]) -> list[dict]:
        """For `flask forward`: each endpoint's deliveries by status, since when it fails, its last error."""
        counts = (
            select(deliveries.c.endpoint, deliveries.c.status, func.count())
            .where(deliveries.c.endpoint.in_(endpoints))
            .group_by(deliveries.c.endpoint, deliveries.c.status)
        )
        # Failing: a delivery still pending after an attempt, or given up. Since the oldest such one was created.
        failing = or_(
            and_(deliveries.c.status == PENDING, deliveries.c.attempts > 0, deliveries.c.last_error.is_not(None)),
            deliveries.c.status == FAILED,
        )
        since = (
            select(deliveries.c.endpoint, func.min(deliveries.c.created_at))
            .where(deliveries.c.endpoint.in_(endpoints), failing)
            .group_by(deliveries.c.endpoint)
        )
        last_error = (
            select(deliveries.c.endpoint, deliveries.c.last_error, deliveries.c.updated_at)
            .where(deliveries.c.endpoint.in_(endpoints), deliveries.c.last_error.is_not(None))
            .order_by(deliveries.c.updated_at)
        )
        with self.database.connect() as connection:
            counted = connection.execute(counts).all()
            failing_since = dict(connection.execute(since).all())
            errors = {endpoint: error for endpoint, error, _ in connection.execute(last_error)}
        stopped = self.stopped_endpoints()
        states = []
        for endpoint in endpoints:
            state = {"endpoint": endpoint, **dict.fromkeys(STATUSES, 0)}
            state.update({status: count for where, status, count in counted if where == endpoint})
            state["failing_since"] = failing_since.get(endpoint)
            state["last_error"] = errors.get(endpoint)
            state["stopped"] = stopped.get(endpoint)
            states.append(state)
        return states

    def replay(self, since: float, status: str | None, endpoint: str | None, now: float) -> int:
        """Send again, from now, every delivery created since `since` (only `status`'s, to `endpoint`'s, when given),
        and send to the endpoints they go to again if they were stopped; how many."""
        chosen = [deliveries.c.created_at >= since]
        if status is not None:
            chosen.append(deliveries.c.status == status)
        if endpoint is not None:
            chosen.append(deliveries.c.endpoint == endpoint)
        statement = (
            update(deliveries)
            .where(*chosen)
            .values(
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                lease_until=None,
                lease_token=None,
                updated_at=now,
            )
        )
        resume = update(forward_endpoints).values(stopped_at=None, stopped_because=None)
        if endpoint is not None:
            resume = resume.where(forward_endpoints.c.endpoint == endpoint)
        with self.database.connect(writing=True) as connection:
            connection.execute(resume)
            return connection.execute(statement).rowcount

    def add_missing(self, forwarding: Forwarding, since: str, now: float) -> int:
        """Make the deliveries that were never made for the events and answer decisions received since `since` (ISO
        time): to an endpoint added to FORWARD_URL later, or from before forwarding was on; how many."""
        sources = [(events.c.event_key, events.c.received_at, EVENT_TYPE, events.c.kind)]
        if forwarding.wants_answers:
            sources.append((answers.c.answer_key, answers.c.received_at, ANSWER_TYPE, None))
        made = 0
        with self.database.connect(writing=True) as connection:
            for endpoint in forwarding.endpoints:
                for key, received_at, kind, status in sources:
                    made += self._add_missing_from(
                        connection, endpoint, key, received_at, kind, status, forwarding, since, now
                    )
        return made

    @staticmethod
    def _add_missing_from(connection, endpoint, key, received_at, kind, status, forwarding, since, now) -> int:
        known = select(deliveries.c.id).where(deliveries.c.endpoint == endpoint, deliveries.c.webhook_id == key)
        chosen = [received_at >= since, key.is_not(None), ~known.exists()]
        if status is not None and forwarding.kinds is not None:
            chosen.append(status.in_(sorted(forwarding.kinds)))
        columns = [
            literal(endpoint).label("endpoint"),
            key.label("webhook_id"),
            literal(kind).label("kind"),
            literal(PENDING).label("status"),
            literal(0).label("attempts"),
            literal(now).label("next_attempt_at"),
            literal(now).label("created_at"),
            literal(now).label("updated_at"),
        ]
        statement = deliveries.insert().from_select(list(DELIVERY_COLUMNS), select(*columns).where(*chosen))
        return len(connection.execute(statement.returning(deliveries.c.id)).all())


class Message(NamedTuple):
    """What a delivery sends: its type, its time (when the server received it) and its data."""

    type: str
    timestamp: str
    data: dict


class Messages:
    """Reads what each type of delivery sends, as it is when sent (a leg's state as folded now)."""

    def __init__(self, database: Database):
        self.database = database
        self._readers = {EVENT_TYPE: self._event, ANSWER_TYPE: self._answer, RECORDING_TYPE: self._recording}

    def read(self, kind: str, webhook_id: str) -> Message | None:
        """The message of a delivery, or None when what it sends is no longer stored (pruned by retention)."""
        reader = self._readers.get(kind)
        if reader is None:
            return None
        with self.database.connect() as connection:
            return reader(connection, webhook_id)

    @staticmethod
    def _event(connection, key: str) -> Message | None:
        row = connection.execute(
            select(events.c.received_at, events.c.payload, events.c.problem, events.c.leg_uuid).where(
                events.c.event_key == key
            )
        ).first()
        if row is None:
            return None
        data: dict = {"event": _payload_object(row.payload)}
        if row.problem is not None or data["event"] is None:
            data = {"event": None, "unreadable": row.payload, "problem": row.problem}
        leg = None
        if row.leg_uuid is not None:
            leg = connection.execute(
                select(legs.c.uuid, legs.c.status, legs.c.duration, legs.c.price).where(legs.c.uuid == row.leg_uuid)
            ).first()
        data["leg"] = (
            None
            if leg is None
            else {"uuid": leg.uuid, "status": leg.status, "duration": leg.duration, "price": leg.price}
        )
        return Message(EVENT_TYPE, row.received_at, data)

    @staticmethod
    def _answer(connection, key: str) -> Message | None:
        row = connection.execute(select(answers).where(answers.c.answer_key == key)).mappings().first()
        if row is None:
            return None
        fields = ("conversation_uuid", "leg_uuid", "route", "caller", "requested", "callee", "connected", "reason")
        data = {name: row[name] for name in fields}
        data["verified"] = row["verified"]
        return Message(ANSWER_TYPE, row["received_at"], data)

    @staticmethod
    def _recording(connection, uuid_: str) -> Message | None:
        row = connection.execute(select(recordings).where(recordings.c.recording_uuid == uuid_)).first()
        if row is None:
            return None
        recording = Recording.of(row)
        data = {"conversation_uuid": recording.conversation_uuid, **recording.as_json()}
        return Message(RECORDING_TYPE, recording.stored_at or recording.received_at, data)


def _payload_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except (RecursionError, ValueError):
        return None
    return value if isinstance(value, dict) else None
