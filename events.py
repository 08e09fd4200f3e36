"""Event intake: name each Vonage call event and log it readably."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from policy import looks_like_phone_number


class LegStatus(NamedTuple):
    """What one of the statuses a call leg reaches (as Vonage names them in call events) means here.

    Everything that knows about leg statuses is built from LEG_STATUSES: the fold (rank), voice_calls_ended_total
    (final), the page's badges and filters (outcome), the told-why answers and the simulator (synchronous) and the
    line log's colours."""

    # Higher ranks win, so a late `ringing` never regresses a `completed` leg. A failure outranks `completed`:
    # Vonage may send `completed` for an unanswered leg and its real outcome after it.
    rank: int
    # What the status says about the call, for the page: in_progress, completed, busy, failed or unanswered.
    outcome: str
    # Whether a synchronous connect posts it to its eventUrl and may be answered with an NCCO for the caller
    # (docs/platform.md): the statuses a caller is told why about.
    synchronous: bool = False

    @property
    def final(self) -> bool:
        """Whether it ends the leg: the first final status a leg reaches counts it in voice_calls_ended_total."""
        return self.outcome != IN_PROGRESS_OUTCOME

    @property
    def went_through(self) -> bool | None:
        """True for a leg that was answered, False for one that never was, None while it is still ringing."""
        if self.rank >= FAILED_RANK:
            return False
        return True if self.rank >= ANSWERED_RANK else None


IN_PROGRESS_OUTCOME = "in_progress"
ANSWERED_RANK = 3
FAILED_RANK = 5
# `disconnected` is a leg hung up after it was answered.
LEG_STATUSES = {
    "started": LegStatus(1, IN_PROGRESS_OUTCOME),
    "ringing": LegStatus(2, IN_PROGRESS_OUTCOME),
    "answered": LegStatus(ANSWERED_RANK, IN_PROGRESS_OUTCOME),
    "disconnected": LegStatus(4, "completed"),
    "completed": LegStatus(4, "completed"),
    "busy": LegStatus(FAILED_RANK, "busy", synchronous=True),
    "cancelled": LegStatus(FAILED_RANK, "unanswered"),
    "unanswered": LegStatus(FAILED_RANK, "unanswered", synchronous=True),
    "rejected": LegStatus(FAILED_RANK, "failed", synchronous=True),
    "failed": LegStatus(FAILED_RANK, "failed", synchronous=True),
    "timeout": LegStatus(FAILED_RANK, "unanswered", synchronous=True),
}
STATUS_RANK = {name: status.rank for name, status in LEG_STATUSES.items()}
IN_PROGRESS = frozenset(name for name, status in LEG_STATUSES.items() if not status.final)
FINAL_STATUSES = tuple(name for name, status in LEG_STATUSES.items() if status.final)
SYNCHRONOUS_STATUSES = frozenset(name for name, status in LEG_STATUSES.items() if status.synchronous)
# The ways a leg that rang can end: answered, or one of the statuses of a leg that never was.
RING_OUTCOMES = ("answered", *(name for name, status in LEG_STATUSES.items() if status.went_through is False))


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


def epoch_seconds(iso: object) -> float | None:
    """The Unix time of an ISO 8601 time as Vonage and utc_timestamp write them (a Z, or none, meaning UTC); None
    for anything else."""
    try:
        moment = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@functools.lru_cache(maxsize=8)
def _utc_second(whole_seconds: int) -> str:
    # Every log line and stored event needs one; formatting a date costs more than the rest of a log line.
    return datetime.fromtimestamp(whole_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


# The kinds event_kind names an event by when it has no status; human and machine are machine detection's statuses,
# and an event whose body could not be read is stored as unreadable (calllog.rows.UNREADABLE).
OTHER_EVENT_KINDS = ("input", "record", "transfer", "error", "event", "human", "machine", "unreadable")


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
    no timestamp is identified by its whole payload, and a recording's webhook by its recording_uuid.
    """
    timestamp = payload.get("timestamp")
    recording = payload.get("recording_uuid")
    if isinstance(recording, str) and recording and "recording_url" in payload:
        # A recording is one event however often, and whenever, its webhook is delivered.
        identity = ["recording", recording]
    elif timestamp is None:
        identity = ["payload", payload]
    else:
        identity = [leg_uuid(payload), event_conversation(payload), event_kind(payload), str(timestamp)]
    canonical = _canonical(identity)
    # surrogatepass: a JSON \udfff escape gives a string with no UTF-8 form, and it still needs an identity.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


# What Vonage writes in `from` for a caller it cannot name (the phone leg's completed event, for one).
UNKNOWN_PARTY = "Unknown"


def leg_parties(direction: object, caller: object, callee: object) -> tuple[str | None, str | None]:
    """A leg's two ends as people read them, caller first; None for an end nobody knows.

    An app user's own leg (inbound, nothing in `from`, the user's name in `to`) is that user calling: shown as
    written it read "? -> Alice", the caller looking like the destination (docs/platform.md)."""
    caller = None if caller in (None, "", UNKNOWN_PARTY) else str(caller)
    callee = None if callee in (None, "", UNKNOWN_PARTY) else str(callee)
    if direction == "inbound" and caller is None and callee is not None and not looks_like_phone_number(callee):
        return callee, None
    return caller, callee


# What a log record of a call is, in its `record` field: the line log format (runtime/logs.py) gives each its own
# shape, and a JSON log line says it too. Other records have no `record` field.
ANSWER_RECORD, EVENT_RECORD, TOLD_WHY_RECORD = "answer", "event", "told_why"


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
        "record": EVENT_RECORD,
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
