"""Event intake: name each Vonage call event and log it readably."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

# The statuses a call leg reaches, as Vonage names them in call events.
# Higher ranks win, so a late `ringing` never regresses a `completed` leg. A failure outcome outranks
# `completed`: Vonage may send `completed` for an unanswered leg and its real outcome after it.
STATUS_RANK = {
    "started": 1,
    "ringing": 2,
    "answered": 3,
    "disconnected": 4,
    "completed": 4,
    "busy": 5,
    "cancelled": 5,
    "unanswered": 5,
    "rejected": 5,
    "failed": 5,
    "timeout": 5,
}
IN_PROGRESS = frozenset({"started", "ringing", "answered"})
# The statuses that end a leg (rank 4 and 5): the first one a leg reaches counts it in voice_calls_ended_total.
FINAL_STATUSES = tuple(status for status in STATUS_RANK if status not in IN_PROGRESS)


@dataclass(frozen=True)
class Payload:
    """What a webhook sent: its fields, and the body's text when that is exactly the fields as JSON.

    `problem` says why a body that is well-formed could not be read into fields (a JSON document nested
    deeper than the parser goes, a number with more digits than Python reads); its fields are then empty,
    and `text` is the body as received.
    """

    fields: dict
    text: str | None = None
    problem: str | None = None


def utc_timestamp(epoch_seconds: float) -> str:
    """An ISO 8601 UTC time with milliseconds, as Vonage writes them: 2021-03-10T10:36:21.285Z."""
    whole = int(epoch_seconds // 1)
    # Round to microseconds first, as datetime does, so binary fractions such as .285 stay .285.
    microseconds = round((epoch_seconds - whole) * 1_000_000)
    if microseconds >= 1_000_000:
        whole, microseconds = whole + 1, microseconds - 1_000_000
    return f"{_utc_second(whole)}.{microseconds // 1000:03d}Z"


@functools.lru_cache(maxsize=8)
def _utc_second(whole_seconds: int) -> str:
    # Every log line and stored event needs one; formatting a date costs more than the rest of a log line.
    return datetime.fromtimestamp(whole_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def event_kind(payload: dict) -> str:
    """What a call event reports: its status (started, completed, ...) or its kind (input, record, transfer, error)."""
    status = payload.get("status")
    if isinstance(status, str) and status:
        return status
    if "dtmf" in payload or "speech" in payload:
        return "input"
    if "recording_url" in payload:
        return "record"
    if "conversation_uuid_from" in payload or "conversation_uuid_to" in payload:
        return "transfer"
    if "reason" in payload:
        return "error"
    return "event"


def leg_uuid(payload: dict) -> str | None:
    """The call leg an event belongs to; human/machine events name it `call_uuid`."""
    value = payload.get("uuid") or payload.get("call_uuid")
    return str(value) if value is not None else None


def event_conversation(payload: dict) -> str | None:
    """The conversation an event belongs to; a transfer event names the one it left."""
    value = payload.get("conversation_uuid") or payload.get("conversation_uuid_from")
    return str(value) if value is not None else None


# One encoder for every event: json.dumps with options builds a new one on every call.
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode


def event_key(payload: dict) -> str:
    """The identity of one event, the same for every delivery of it: leg, conversation, kind and timestamp.

    One leg emits many statuses, so the leg's uuid alone never identifies an event; an event with
    no timestamp is identified by its whole payload.
    """
    timestamp = payload.get("timestamp")
    if timestamp is None:
        identity = ["payload", payload]
    else:
        identity = [leg_uuid(payload), event_conversation(payload), event_kind(payload), str(timestamp)]
    canonical = _canonical(identity)
    # surrogatepass: a JSON \udfff escape gives a string with no UTF-8 form, and it still needs an identity.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def log_event(
    logger: logging.Logger, payload: dict, received_at: float, verified: bool, duplicate: bool = False
) -> None:
    """Log one event: a headline (kind, direction, leg, signature) then, in pretty mode, the payload as a block."""
    kind = event_kind(payload)
    direction = payload.get("direction")
    leg = leg_uuid(payload) or "no uuid"
    signature = "signature verified" if verified else "unverified"
    headline = f"VOICE EVENT {kind}" + (f" ({direction})" if direction else "") + f" leg {leg} [{signature}]"
    details = {
        "event": kind,
        "leg": leg_uuid(payload),
        "conversation_uuid": event_conversation(payload),
        "received_at": utc_timestamp(received_at),
        "verified": verified,
    }
    if duplicate:
        logger.info(f"{headline}: a repeated delivery, already stored", extra={**details, "duplicate": True})
    else:
        logger.info(headline, extra={**details, "payload": payload})
