"""Leg records: fold one call leg's events, in whatever order they arrived, into the leg's current state."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from events import STATUS_RANK, event_kind

# A duration beyond this is no call's (Vonage ends calls after 7,200 s); the column's integer must hold it.
MAX_SECONDS = 10**9
MAX_MONEY_TEXT = 40  # the legs table's rate and price columns
MACHINE_DETECTION = frozenset({"human", "machine"})
LEG_FIELDS = (
    "conversation_uuid",
    "direction",
    "from_number",
    "to_number",
    "status",
    "start_time",
    "answer_time",
    "end_time",
    "duration",
    "rate",
    "price",
    "network",
    "detail",
    "reason",
    "machine_detection",
)
# Where a leg's fold has got to, beside its fields: the fold_order of the last event folded in. A new event after it
# is folded onto the leg; one before it (it arrived late) makes the leg be folded again from all its events.
FOLD_FIELDS = ("fold_timestamp", "fold_event_id")


def exact_decimal(value) -> str | None:
    """A price or rate as exact decimal text ("0.00833333"), or None if absent or not an amount of money:
    not a number, longer than its column holds, or a trillion euros and more (which no sum could carry)."""
    if value is None or isinstance(value, (bool, float)):
        return None
    text = str(value).strip()
    if len(text) > MAX_MONEY_TEXT:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return text if number.is_finite() and number.adjusted() < 12 else None


def whole_seconds(value) -> int | None:
    """A duration ("15") as whole seconds, or None when it is not a number of seconds a call can last."""
    try:
        seconds = Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not seconds.is_finite() or not 0 <= seconds <= MAX_SECONDS:
        return None
    return int(seconds)


def _text(value) -> str | None:
    return None if value is None or value == "" else str(value)


def fold_order(payload: dict, arrival: int) -> tuple[str, int]:
    """Where an event comes in its leg's fold: by its timestamp, then by when it arrived (its events.id)."""
    return str(payload.get("timestamp") or ""), arrival


def fold_leg(payloads: list[dict]) -> dict:
    """The state of one leg from all its events (payload dicts, in arrival order). Order-independent.

    Returns every field of LEG_FIELDS; unknown statuses set the status only while no known one is seen.
    """
    ordered = sorted(enumerate(payloads), key=lambda pair: fold_order(pair[1], pair[0]))
    return fold_onto(None, [payload for _, payload in ordered])


def fold_onto(leg: dict | None, payloads: list[dict]) -> dict:
    """`leg` (a state fold_leg returned, or None for none) with more events folded in, in fold_order. Each must come
    after every event already in `leg` in that order: the result is then what fold_leg gives for all of them."""
    leg = dict.fromkeys(LEG_FIELDS) if leg is None else {name: leg[name] for name in LEG_FIELDS}
    # The status's rank is what its status says: -1 before any, 0 for a status this server does not know.
    rank = -1 if leg["status"] is None else STATUS_RANK.get(leg["status"], 0)
    for payload in payloads:
        kind = event_kind(payload)
        for field, key in (("conversation_uuid", "conversation_uuid"), ("direction", "direction"), ("to_number", "to")):
            if leg[field] is None:
                leg[field] = _text(payload.get(key))
        # The outbound leg's `completed` event says from "Unknown"; keep the caller seen earlier.
        caller = _text(payload.get("from"))
        if caller and (leg["from_number"] is None or leg["from_number"] == "Unknown"):
            leg["from_number"] = caller
        if kind in MACHINE_DETECTION:
            leg["machine_detection"] = kind
            continue
        new_rank = STATUS_RANK.get(kind, 0)
        if (kind in STATUS_RANK or "status" in payload) and new_rank > rank:
            leg["status"], rank = kind, new_rank
        if kind == "started" and leg["start_time"] is None:
            leg["start_time"] = _text(payload.get("timestamp"))
        if kind == "answered" and leg["answer_time"] is None:
            leg["answer_time"] = _text(payload.get("timestamp"))
        if kind == "completed":
            leg["start_time"] = leg["start_time"] or _text(payload.get("start_time"))
            leg["end_time"] = _text(payload.get("end_time")) or leg["end_time"]
            leg["duration"] = whole_seconds(payload.get("duration"))
            leg["rate"] = exact_decimal(payload.get("rate"))
            leg["price"] = exact_decimal(payload.get("price"))
            leg["network"] = _text(payload.get("network"))
        for field in ("detail", "reason"):
            if payload.get(field) not in (None, ""):
                leg[field] = _text(payload[field])
    return leg


def total_price(prices) -> str | None:
    """The exact sum of leg prices (decimal strings; None skipped), or None when there are none."""
    known = [Decimal(price) for price in prices if price is not None]
    return str(sum(known, Decimal(0))) if known else None
