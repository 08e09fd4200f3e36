"""A call's outcome for the page's badges, decided from its legs and answer decisions, without HTTP."""

from datetime import UTC, datetime

import pytest

from calllog.outcome import LABELS, call_outcome, leg_outcome
from calllog.page import badge_class, is_stale
from events import FINAL_STATUSES, LEG_STATUSES, SYNCHRONOUS_STATUSES

CONNECTED = {"connected": True, "route": "answer"}
REFUSED = {"connected": False, "route": "answer"}
TOLD_WHY = {"connected": False, "route": "outcome"}


@pytest.mark.parametrize(
    ("status", "outcome", "badge"),
    [
        ("ringing", "in_progress", "live"),
        ("answered", "in_progress", "live"),
        ("completed", "completed", "done"),
        ("busy", "busy", "busy"),
        ("rejected", "failed", "failed"),
        ("timeout", "unanswered", "missed"),
        ("cancelled", "unanswered", "missed"),
        (None, "unknown", "unknown"),
        ("record", "unknown", "unknown"),
    ],
)
def test_each_leg_status_has_its_outcome_and_badge(status, outcome, badge):
    assert leg_outcome(status) == outcome
    assert badge_class(status) == badge


def test_a_busy_callee_makes_the_call_busy_though_the_callers_leg_completed():
    assert call_outcome(["completed", "busy"], [CONNECTED, TOLD_WHY]) == "busy"


def test_a_failure_outranks_every_other_finished_leg():
    assert call_outcome(["completed", "busy", "failed", "unanswered"], [CONNECTED]) == "failed"


def test_a_call_with_a_leg_still_ringing_is_in_progress_not_connected():
    assert call_outcome(["answered", "ringing"], [CONNECTED]) == "in_progress"


def test_a_refused_call_is_refused_though_its_callers_leg_completed():
    assert call_outcome(["completed"], [REFUSED]) == "refused"


def test_a_told_why_is_no_refusal_the_callees_leg_decides():
    assert call_outcome(["completed", "unanswered"], [CONNECTED, TOLD_WHY]) == "unanswered"


def test_both_legs_completed_is_completed():
    assert call_outcome(["completed", "completed"], [CONNECTED]) == "completed"


def test_a_call_with_no_legs_yet_is_unknown():
    assert call_outcome([], [CONNECTED]) == "unknown"


@pytest.mark.parametrize("status", sorted(LEG_STATUSES))
def test_every_leg_status_reads_as_an_outcome_the_page_shows(status):
    """events.LEG_STATUSES is the one list of statuses; its outcome must be one the page has a label and badge for."""
    assert LEG_STATUSES[status].outcome in LABELS
    assert leg_outcome(status) not in {"unknown", "refused"}
    assert badge_class(status) not in {"unknown", "refused"}


def test_the_statuses_a_connect_may_be_told_why_about_are_the_final_failures_but_cancelled():
    """A synchronous connect posts a ringing leg's failure to its eventUrl; a caller who hung up (cancelled) is
    there to hear nothing."""
    failures = {name for name, status in LEG_STATUSES.items() if status.went_through is False}
    assert failures - {"cancelled"} == SYNCHRONOUS_STATUSES
    assert set(FINAL_STATUSES) == failures | {"completed", "disconnected"}


def test_a_call_in_progress_with_no_event_for_longer_than_call_limit_is_stale():
    assert call_outcome(["answered", "started"], [CONNECTED], stale=True) == "stale"
    assert call_outcome(["completed"], [CONNECTED], stale=True) == "completed"  # an ended call is what it was


@pytest.mark.parametrize(
    "updated_at, stale",
    [
        ("2026-12-07T09:59:59.000Z", True),
        ("2026-12-07T10:00:00.000Z", False),
        ("2026-12-07T11:59:30.000Z", False),
        (None, False),
        ("garbage", False),
    ],
)
def test_is_stale_compares_the_last_activity_with_call_limit(updated_at, stale):
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert is_stale(updated_at, now, 7200) is stale
