"""A call's outcome for the page's badges, decided from its legs and answer decisions, without HTTP."""

import pytest

from calllog.outcome import call_outcome, leg_outcome
from calllog.page import badge_class
from events import STATUS_RANK
from runtime import logs

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


@pytest.mark.parametrize("status", sorted(STATUS_RANK))
def test_every_leg_status_has_an_outcome_a_badge_and_a_line_colour(status):
    """The statuses are listed in legs.STATUS_RANK; the page's outcomes and the line log's colours name them again,
    so a status added to one and not the others would show as 'no status yet' and uncoloured."""
    assert leg_outcome(status) != "unknown"
    assert badge_class(status) != "unknown"
    assert status in logs._COLOURS
