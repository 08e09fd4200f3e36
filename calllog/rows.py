"""The rows the call log stores, built in the worker that received the webhook: whatever was sent, a row that
every database accepts (text cut to its column, no NUL, no unpaired surrogate), and the payload as received."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import NamedTuple

from calllog.schema import COLUMN_LENGTHS, answers, events, recordings
from events import Payload, event_conversation, event_key, event_kind, leg_uuid
from ncco import AnswerDecision


class EventRow(NamedTuple):
    """One delivery of an event, as the events table stores it; its fields are the table's columns in order (the
    frame a worker sends the writer carries them in that order too: calllog/frames.py)."""

    event_key: str
    conversation_uuid: str | None
    leg_uuid: str | None
    kind: str
    timestamp: str | None
    received_at: str
    verified: bool
    payload: str
    problem: str | None


EVENT_COLUMNS = EventRow._fields
if tuple(column.name for column in events.columns if column.name != "id") != EVENT_COLUMNS:
    raise RuntimeError("calllog.rows.EventRow must name the events table's columns, in their order")
ANSWER_COLUMNS = tuple(column.name for column in answers.columns if column.name != "id")
UNREADABLE = "unreadable"
_encode = json.JSONEncoder(
    ensure_ascii=False, default=str
).encode  # the kind of an event whose body could not be read into fields


def column_text(value, limit: int | None = None) -> str | None:
    """`value` as text any database stores: NUL and unpaired surrogates become U+FFFD; cut to `limit`."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # An unpaired surrogate (sent as a JSON \udfff escape) has no UTF-8 form.
            text = "".join("\ufffd" if "\ud800" <= character <= "\udfff" else character for character in text)
    return text if limit is None else text[:limit]


def fit(table_name: str, row: dict) -> dict:
    """The row with every text value made storable and cut to its column's length."""
    limits = COLUMN_LENGTHS[table_name]
    return {key: column_text(value, limits.get(key)) if isinstance(value, str) else value for key, value in row.items()}


def event_row(payload: Payload, received_at: str, verified: bool) -> EventRow:
    """The events row of one delivery, keyed by its identity (events.event_key).

    The payload is stored as received when the body was a JSON object, else as the fields in JSON.
    """
    fields = payload.fields
    limits = COLUMN_LENGTHS["events"]
    if payload.problem is not None:
        key = event_key({"unreadable": payload.text})
        return EventRow(key, None, None, UNREADABLE, None, received_at, verified, payload.text, payload.problem)
    stored = payload.text if payload.text is not None else _encode(fields)
    timestamp = fields.get("timestamp")
    return EventRow(
        event_key(fields),
        column_text(event_conversation(fields), limits["conversation_uuid"]),
        column_text(leg_uuid(fields), limits["leg_uuid"]),
        column_text(event_kind(fields), limits["kind"]),
        column_text(timestamp, limits["timestamp"]),
        received_at,
        verified,
        column_text(stored),
        None,
    )


RECORD_KIND = "record"  # events.event_kind of a recording's webhook
WAITING = "waiting"  # a recording not stored yet (calllog/recordings.py has the others)
RECORDING_COLUMNS = (
    "recording_uuid",
    "conversation_uuid",
    "recording_url",
    "size",
    "start_time",
    "end_time",
    "received_at",
    "status",
    "attempts",
    "next_attempt_at",
)
if not set(RECORDING_COLUMNS) <= {column.name for column in recordings.columns}:
    raise RuntimeError("calllog.rows.RECORDING_COLUMNS must name columns of the recordings table")


def recording_row(row: EventRow, now: float) -> tuple | None:
    """The recordings row (RECORDING_COLUMNS) that a newly stored recording's webhook makes, due at `now`; None for
    any other event. A webhook without a recording_uuid is named by its event's key."""
    if row.kind != RECORD_KIND or row.problem is not None:
        return None
    try:
        fields = json.loads(row.payload)
    except ValueError:
        return None
    url = fields.get("recording_url") if isinstance(fields, dict) else None
    if not isinstance(url, str) or not url:
        return None
    limits = COLUMN_LENGTHS["recordings"]
    uuid_ = fields.get("recording_uuid")
    size = fields.get("size")
    return (
        column_text(uuid_ if isinstance(uuid_, str) and uuid_ else row.event_key, limits["recording_uuid"]),
        row.conversation_uuid,
        column_text(url),
        size if isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2**62 else None,
        column_text(fields.get("start_time"), limits["start_time"]),
        column_text(fields.get("end_time"), limits["end_time"]),
        row.received_at,
        WAITING,
        0,
        now,
    )


def answer_key(jti: object = None) -> str:
    """An answer decision's key: from the signed request's JWT id when it has one (a replayed token then makes the
    same key, and is stored once), else new."""
    if isinstance(jti, str) and jti:
        return "jti:" + hashlib.sha256(jti.encode("utf-8", "replace")).hexdigest()
    return "new:" + uuid.uuid4().hex


def answer_row(route: str, decision: AnswerDecision, received_at: str, verified: bool, key: str | None = None) -> dict:
    """The answers row of one answer decision, stored once per `key` (answer_key; a new one when None)."""
    fields = decision.request
    caller = fields.get("from_user") or fields.get("from")
    row = {
        "conversation_uuid": fields.get("conversation_uuid"),
        "leg_uuid": fields.get("uuid"),
        "route": route,
        "caller": None if caller is None else str(caller),
        "requested": decision.requested,
        "callee": decision.callee,
        "connected": decision.connected,
        "reason": decision.reason,
        "received_at": received_at,
        "verified": verified,
        "answer_key": key or answer_key(),
        "recorded": decision.recorded,
    }
    return {key: column_text(value) if key in _TEXT_ANSWER_FIELDS else value for key, value in row.items()}


_TEXT_ANSWER_FIELDS = ("conversation_uuid", "leg_uuid", "caller", "requested", "reason")
