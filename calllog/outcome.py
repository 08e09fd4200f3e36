"""A call's outcome, for the call-log page's badges: one word per leg status, and one per conversation."""

from __future__ import annotations

from collections.abc import Iterable

from events import LEG_STATUSES
from ncco import TOLD_WHY_ROUTE

# What a leg's status says about the leg (events.LEG_STATUSES).
LEG_OUTCOMES = {name: status.outcome for name, status in LEG_STATUSES.items()}
# Finished legs, most telling first: when Alice's app leg completes but the phone it rang was busy, the call
# was busy; a failure says more about a call than the caller's leg completing.
MOST_TELLING_FIRST = ("failed", "busy", "unanswered", "completed")
LABELS = {
    "in_progress": "in progress",
    "completed": "completed",
    "busy": "busy",
    "failed": "failed",
    "unanswered": "unanswered",
    "refused": "refused",
    "stale": "stale: no event for longer than CALL_LIMIT",
    "unknown": "no status yet",
}


def leg_outcome(status: str | None) -> str:
    """The outcome a leg status stands for: one of LABELS' keys except "refused"; "unknown" for none."""
    return LEG_OUTCOMES.get(status or "", "unknown")


def call_outcome(leg_statuses: Iterable[str | None], answers: Iterable[dict], stale: bool = False) -> str:
    """A conversation's outcome from its legs' statuses and its answer decisions ({"connected", "route"}).

    A call with any leg still started, ringing or answered is in progress; else one the server refused to connect
    (by policy) is refused, whatever its caller's leg says afterwards; else its most telling leg decides. A
    told-why (route "outcome") is no refusal: the connect was made and failed, and its leg says how.
    A call still in progress with no event for longer than the longest a call may last (`stale`: CALL_LIMIT) is
    stale: its last events never came, and it is not going on."""
    outcomes = {leg_outcome(status) for status in leg_statuses}
    if "in_progress" in outcomes:
        return "stale" if stale else "in_progress"
    if any(not answer["connected"] and answer["route"] != TOLD_WHY_ROUTE for answer in answers):
        return "refused"
    return next((outcome for outcome in MOST_TELLING_FIRST if outcome in outcomes), "unknown")
