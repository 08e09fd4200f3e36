"""Leg records folded from events: order-independent, never regressing, exact money."""

import itertools
import random

from calllog.legs import exact_decimal, fold_leg, fold_onto, fold_order, total_price
from conftest import FIXTURES, SEED_EVENTS, load_fixture
from events import event_key

OUTBOUND = [load_fixture(path) for path in SEED_EVENTS if "outbound" in path.stem]
STATUS = {
    name: load_fixture(FIXTURES / "events" / f"{name}.json")
    for name in ("started", "ringing", "answered", "completed", "busy", "human")
}


def test_seed_outbound_leg_completes_with_duration_rate_price_network():
    leg = fold_leg(OUTBOUND)
    assert leg["status"] == "completed"
    assert (leg["duration"], leg["rate"], leg["price"], leg["network"]) == (5, "0.10000000", "0.00833333", "23433")
    assert leg["from_number"] == "Alice" and leg["to_number"] == "447700900000"
    assert leg["start_time"] == "2021-03-10T10:36:27.080Z"
    assert leg["answer_time"] == "2021-03-10T10:36:31.604Z"
    assert leg["end_time"] == "2021-03-10T10:36:36.000Z"


def test_every_arrival_order_gives_the_same_leg():
    expected = fold_leg(OUTBOUND)
    for order in itertools.permutations(OUTBOUND):
        assert fold_leg(list(order)) == expected


# A leg's events with every kind of field the fold reads: caller changes, statuses of every rank and an unknown one,
# machine detection, details and reasons, timestamps that tie or are missing.
MIXED = [
    *OUTBOUND,
    STATUS["busy"],
    STATUS["human"],
    {"uuid": "u", "status": "teleported", "from": "Unknown", "timestamp": "2021-03-10T10:36:30.000Z"},
    {"uuid": "u", "status": "ringing", "detail": "late", "reason": "why", "timestamp": "2021-03-10T10:36:27.080Z"},
    {"uuid": "u", "status": "completed", "from": "Bob", "end_time": "", "duration": "x"},
    {"uuid": "u", "dtmf": {"digits": "1"}, "timestamp": "2021-03-10T10:36:35.000Z"},
]


def test_a_fold_continued_with_later_events_is_the_fold_of_them_all():
    # How the committer folds a leg's new events onto its stored state (calllog/committer.py): for every split of
    # every arrival order into what was folded before and what comes after it in fold_order, the same leg.
    shuffle = random.Random(30)
    for _ in range(200):
        arrivals = shuffle.sample(MIXED, shuffle.randint(1, len(MIXED)))
        expected = fold_leg(arrivals)
        ordered = [payload for _, payload in sorted(enumerate(arrivals), key=lambda pair: fold_order(pair[1], pair[0]))]
        for split in range(len(ordered) + 1):
            before = fold_leg(ordered[:split]) if split else None
            assert fold_onto(before, ordered[split:]) == expected


def test_late_ringing_after_completed_leaves_it_completed():
    late_ringing = dict(STATUS["ringing"], timestamp="2026-11-24T09:05:00.000Z")
    assert fold_leg([STATUS["started"], STATUS["completed"], late_ringing])["status"] == "completed"


def test_failure_outcome_outranks_completed_whatever_the_order():
    for order in ([STATUS["completed"], STATUS["busy"]], [STATUS["busy"], STATUS["completed"]]):
        leg = fold_leg(order)
        assert leg["status"] == "busy"
        assert leg["detail"] == "busy"
        assert leg["price"] == "0.01248833"


def test_machine_detection_is_kept_without_changing_status():
    leg = fold_leg([STATUS["answered"], STATUS["human"]])
    assert leg["status"] == "answered" and leg["machine_detection"] == "human"


def test_unknown_status_only_fills_an_empty_status():
    assert fold_leg([{"uuid": "u", "status": "teleported"}])["status"] == "teleported"
    assert fold_leg([STATUS["ringing"], {"uuid": "u", "status": "teleported"}])["status"] == "ringing"


def test_prices_stay_exact_decimals():
    assert total_price(["0.1", "0.2", None]) == "0.3"
    assert total_price(["0.00833333", "0"]) == "0.00833333"
    assert total_price([None]) is None
    assert exact_decimal(0.1) is None and exact_decimal("abc") is None and exact_decimal("0.10") == "0.10"


def test_event_identity_is_more_than_the_leg_uuid():
    started, answered = OUTBOUND[0], OUTBOUND[1]
    assert started["uuid"] == answered["uuid"]
    assert event_key(started) != event_key(answered)
    assert event_key(dict(started)) == event_key(started)


def test_human_event_identity_uses_call_uuid():
    human = STATUS["human"]
    assert event_key(human) != event_key(dict(human, call_uuid="another-leg"))
