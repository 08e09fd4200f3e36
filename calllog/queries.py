"""Reading the call log: conversations with their legs, answer decisions and events, newest first."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as CheckTimeout
from decimal import Decimal

from sqlalchemy import and_, case, exists, func, or_, select, text
from sqlalchemy.engine import Connection

from calllog.legs import total_price
from calllog.recordings import recordings_of
from calllog.rows import column_text
from calllog.schema import (
    SCHEMA_VERSION,
    Database,
    StorageError,
    answers,
    brief,
    call_actions,
    conversations,
    deliveries,
    events,
    legs,
)
from events import FINAL_STATUSES, IN_PROGRESS, STATUS_RANK
from ncco import TOLD_WHY_ROUTE

# What the status filter takes: the two summaries the call log offers, then every status a leg can end up in.
STATUS_FILTERS = ("in_progress", "refused", *STATUS_RANK)
STATUS_FILTER_ERROR = f"status must be one of: {', '.join(STATUS_FILTERS)}; e.g. ?status=completed"
# How long /health waits for the database's answer. A database that is hung (stopped, or its host gone without a
# reset) answers nothing and no client timeout covers that, so the check runs on a thread of its own.
HEALTH_SECONDS = 1.0


class CallLogReader:
    """Queries over one call-log database. Every method raises StorageError when the database fails (and calls
    `on_failure` first: the app counts it in voice_database_errors_total)."""

    def __init__(self, database: Database, on_failure: Callable[[], object] = lambda: None):
        self.database = database
        self._on_failure = on_failure
        self._health_checks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage-health")
        self._health_lock = threading.Lock()
        self._health_check: Future | None = None

    @contextlib.contextmanager
    def _connect(self):
        """A reading connection (Database.connect); a failure is counted, then raised as StorageError."""
        try:
            with self.database.connect() as connection:
                yield connection
        except StorageError:
            self._on_failure()
            raise

    def count_events(self) -> int:
        with self._connect() as connection:
            return connection.execute(select(func.count()).select_from(events)).scalar_one()

    def stored_event_keys(self, keys: list[str]) -> set[str]:
        """Which of these event identities (events.event_key) are stored."""
        found: set[str] = set()
        with self._connect() as connection:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                query = select(events.c.event_key).where(events.c.event_key.in_(chunk))
                found.update(connection.execute(query).scalars())
        return found

    def health(self) -> dict:
        """The database's state for /health: ok with the backend and schema version, or error with why, within
        HEALTH_SECONDS. A check still waiting for a hung database is waited on again, never started twice."""
        with self._health_lock:
            if self._health_check is None or self._health_check.done():
                self._health_check = self._health_checks.submit(self._check_health)
            check = self._health_check
        try:
            return check.result(timeout=HEALTH_SECONDS)
        except CheckTimeout:
            self._on_failure()
            error = f"the database did not answer within {HEALTH_SECONDS:g} s"
            return {"status": "error", "backend": self.database.backend, "error": error}

    def _check_health(self) -> dict:
        try:
            with self._connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:
            return {"status": "error", "backend": self.database.backend, "error": brief(error)}
        return {"status": "ok", "backend": self.database.backend, "schema_version": SCHEMA_VERSION}

    def list_calls(
        self, limit: int = 20, cursor: str | None = None, status: str | None = None, number: str | None = None
    ) -> tuple[list[dict], str | None]:
        """Conversations, newest first, with their legs and answer decisions; and the cursor of the next page.

        Raises ValueError for a limit under 1, a status not in STATUS_FILTERS, or a cursor this server did not
        give out.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if status and status not in STATUS_FILTERS:
            raise ValueError(STATUS_FILTER_ERROR)
        query = select(conversations).order_by(
            conversations.c.started_at.desc(), conversations.c.conversation_uuid.desc()
        )
        # Text from a URL may hold what no column does (a NUL, which PostgreSQL refuses): made storable first.
        if cursor:
            query = query.where(_after(*(column_text(part) for part in decode_cursor(cursor))))
        query = _filtered(query, status, number)
        with self._connect() as connection:
            rows = connection.execute(query.limit(limit + 1)).mappings().all()
            page = rows[:limit]
            calls = _assemble(connection, page, with_events=False)
        next_cursor = (
            encode_cursor(page[-1]["started_at"], page[-1]["conversation_uuid"]) if len(rows) > limit else None
        )
        return calls, next_cursor

    def summarize(self, status: str | None = None, number: str | None = None) -> dict:
        """Totals over every conversation the filter matches (not one page): {"calls", "answered" (calls whose
        callee picked up: an outbound leg was answered), "total_price" (exact sum of leg prices, EUR, or None),
        "median_duration" (in seconds, of answered calls, each as long as its longest answered outbound leg;
        None when there are none)}. The caller's own leg does not count: Vonage answers it for every call, the
        refused ones too.

        Only counts, each distinct price with how many legs have it, and the middle one or two durations leave
        the database: a pass over the matching conversations, one over their legs, and one for the median."""
        chosen = _filtered(select(conversations.c.conversation_uuid), status, number)
        # Unfiltered, their legs are a join, not an IN over the whole table.
        their_legs = _legs_of(chosen if status or number else None)
        per_call = (
            their_legs.with_only_columns(
                func.max(case((_picked_up(), 1), else_=0)).label("answered"),
                func.max(case((_picked_up(), legs.c.duration))).label("seconds"),
            )
            .group_by(legs.c.conversation_uuid)
            .subquery()
        )
        prices = (
            their_legs.with_only_columns(legs.c.price, func.count())
            .where(legs.c.price.is_not(None))
            .group_by(legs.c.price)
        )
        with self._connect() as connection:
            calls = connection.execute(select(func.count()).select_from(chosen.subquery())).scalar_one()
            answered, timed = connection.execute(
                select(func.coalesce(func.sum(per_call.c.answered), 0), func.count(per_call.c.seconds))
            ).one()
            total = _price_sum(connection.execute(prices).all())
            median = _median(connection, per_call.c.seconds, timed)
        return {"calls": calls, "answered": answered, "total_price": total, "median_duration": median}

    def get_call(self, conversation_uuid: str) -> dict | None:
        """One conversation with each leg's ordered events, or None if unknown."""
        with self._connect() as connection:
            query = select(conversations).where(conversations.c.conversation_uuid == column_text(conversation_uuid))
            row = connection.execute(query).mappings().first()
            if row is None:
                return None
            return _assemble(connection, [row], with_events=True)[0]


def _filtered(query, status: str | None, number: str | None):
    """`query` over conversations, narrowed to those with a leg in `status` and involving `number`."""
    # Text from a URL may hold what no column does (a NUL, which PostgreSQL refuses): made storable first.
    if status:
        query = query.where(_has_status(column_text(status)))
    if number:
        query = query.where(_involves(column_text(number)))
    return query


def _picked_up():
    """A leg Vonage rang (outbound) that was answered."""
    return and_(legs.c.direction == "outbound", legs.c.answer_time.is_not(None))


def _legs_of(chosen):
    """A query over the legs of the conversations `chosen` selects (None: of every conversation)."""
    if chosen is None:
        on = legs.c.conversation_uuid == conversations.c.conversation_uuid
        return select(legs.c.conversation_uuid).select_from(legs.join(conversations, on))
    return select(legs.c.conversation_uuid).where(legs.c.conversation_uuid.in_(chosen))


def _price_sum(counted) -> str | None:
    """The exact sum of (price, how many legs have it) pairs, as total_price gives it; None for no pairs."""
    return str(sum((Decimal(price) * count for price, count in counted), Decimal(0))) if counted else None


def _median(connection: Connection, seconds, count: int) -> float | None:
    """The median of `count` non-null `seconds` (a subquery's column), sorted by the database, which sends the
    middle only."""
    if not count:
        return None
    middle = select(seconds).where(seconds.is_not(None)).order_by(seconds).offset((count - 1) // 2)
    values = connection.execute(middle.limit(2 - count % 2)).scalars().all()
    return sum(values) / len(values)


def _after(started_at: str, uuid: str):
    return or_(
        conversations.c.started_at < started_at,
        and_(conversations.c.started_at == started_at, conversations.c.conversation_uuid < uuid),
    )


def _has_status(status: str):
    """The filter for `status`, as the call's outcome reads (calllog.outcome): in progress while a leg is; refused
    when the server refused to connect it (a told-why is no refusal); a final status only once the call has ended,
    so a call with a busy leg and another still ringing is in progress, not busy."""
    same_conversation = legs.c.conversation_uuid == conversations.c.conversation_uuid
    live = exists().where(and_(same_conversation, legs.c.status.in_(IN_PROGRESS)))
    if status == "refused":
        return exists().where(
            and_(
                answers.c.conversation_uuid == conversations.c.conversation_uuid,
                answers.c.connected.is_(False),
                answers.c.route != TOLD_WHY_ROUTE,
            )
        )
    if status == "in_progress":
        return live
    has_it = exists().where(and_(same_conversation, legs.c.status == status))
    return and_(has_it, ~live) if status in FINAL_STATUSES else has_it


def _involves(number: str):
    pattern = f"%{_digits_or_text(number)}%"
    leg_match = exists().where(
        and_(
            legs.c.conversation_uuid == conversations.c.conversation_uuid,
            or_(legs.c.from_number.like(pattern), legs.c.to_number.like(pattern)),
        )
    )
    answer_match = exists().where(
        and_(
            answers.c.conversation_uuid == conversations.c.conversation_uuid,
            or_(answers.c.callee.like(pattern), answers.c.caller.like(pattern), answers.c.requested.like(pattern)),
        )
    )
    return or_(leg_match, answer_match)


def _assemble(connection: Connection, rows, with_events: bool) -> list[dict]:
    uuids = [row["conversation_uuid"] for row in rows]
    if not uuids:
        return []
    leg_query = select(legs).where(legs.c.conversation_uuid.in_(uuids)).order_by(legs.c.start_time, legs.c.uuid)
    leg_rows = connection.execute(leg_query).mappings().all()
    answer_query = select(answers).where(answers.c.conversation_uuid.in_(uuids)).order_by(answers.c.id)
    answer_rows = connection.execute(answer_query).mappings().all()
    action_query = select(call_actions).where(call_actions.c.conversation_uuid.in_(uuids)).order_by(call_actions.c.id)
    action_rows = connection.execute(action_query).mappings().all()
    events_by_leg = _events_by_leg(connection, uuids, [leg["uuid"] for leg in leg_rows]) if with_events else {}
    recordings_by_call = recordings_of(connection, uuids)
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
            "actions": [_action_json(action) for action in action_rows if action["conversation_uuid"] == uuid],
            "total_price": total_price(leg["price"] for leg in call_legs),
            "recordings": recordings_by_call.get(uuid, []),
        }
        if with_events:
            call["other_events"] = events_by_leg.get("", [])
        calls.append(call)
    return calls


def _events_by_leg(connection: Connection, conversation_uuids: list[str], leg_uuids: list[str]) -> dict[str, list]:
    """Each leg's events in order; events with no leg under ''."""
    query = (
        select(events)
        .where(events.c.conversation_uuid.in_(conversation_uuids) | events.c.leg_uuid.in_(leg_uuids))
        .order_by(events.c.timestamp, events.c.id)
    )
    found: dict[str, list[dict]] = {}
    rows = connection.execute(query).mappings().all()
    forwarded = _forwarded(connection, [row["event_key"] for row in rows])
    for row in rows:
        event = {
            "status": row["kind"],
            "timestamp": row["timestamp"],
            "received_at": row["received_at"],
            "verified": row["verified"],
            "payload": _payload(row["payload"]) if row["problem"] is None else row["payload"],
            "forwarded": forwarded.get(row["event_key"], {}),
        }
        if row["problem"] is not None:
            event["problem"] = row["problem"]
        found.setdefault(row["leg_uuid"] or "", []).append(event)
    return found


def _forwarded(connection: Connection, keys: list[str]) -> dict[str, dict[str, str]]:
    """Each of these events' deliveries to FORWARD_URL, as {endpoint: status} (calllog.deliveries)."""
    found: dict[str, dict[str, str]] = {}
    for start in range(0, len(keys), 500):
        query = select(deliveries.c.webhook_id, deliveries.c.endpoint, deliveries.c.status).where(
            deliveries.c.webhook_id.in_(keys[start : start + 500])
        )
        for key, endpoint, status in connection.execute(query):
            found.setdefault(key, {})[endpoint] = status
    return found


def _payload(text: str):
    """A stored payload as its JSON value, fit to be sent as strict JSON: a number JSON cannot carry (NaN,
    Infinity, or one too large for a float) is given as the text it was sent as. The payload's text when
    Python cannot read it back (nested too deeply)."""
    try:
        return json.loads(text, parse_constant=str, parse_float=_finite_or_text)
    except (RecursionError, ValueError):
        return text


def _finite_or_text(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else text


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
        "recorded": bool(row["recorded"]),
    }


def _action_json(row) -> dict:
    return {
        "requested_at": row["requested_at"],
        "leg": row["leg_uuid"],
        "action": row["action"],
        "detail": row["detail"],
        "requested_by": row["requested_by"],
        "outcome": row["outcome"],
        "vonage_status": row["vonage_status"],
        "result": row["result"],
    }


def _digits_or_text(number: str) -> str:
    digits = "".join(character for character in number if character.isdigit())
    return digits or number.strip()


def encode_cursor(started_at: str, uuid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([started_at, uuid]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        started_at, uuid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(started_at), str(uuid)
    except (ValueError, TypeError, RecursionError):
        raise ValueError(
            "the cursor is not one this server gave out; use the 'next' value of a previous page"
        ) from None
