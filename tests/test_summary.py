"""The call-log summary (calls, answered, spend, median duration) over every call a filter matches, on both backends."""

import pytest

from conftest import CALL_LOG_TOKEN
from support.pg import database_url_for

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    return database_url_for(request.param, tmp_path)


def post_call(client, conversation, outcome, seconds=0, price=None, to="447700900000"):
    """A Client SDK call: Alice's leg (answered by Vonage, always) and the leg to `to`, ending as `outcome`."""
    caller, callee = f"{conversation}-in", f"{conversation}-out"
    events = [
        {
            "uuid": caller,
            "status": "answered",
            "direction": "inbound",
            "to": "Alice",
            "timestamp": "2026-11-24T10:00:01Z",
        },
        {"uuid": callee, "status": "ringing", "direction": "outbound", "to": to, "timestamp": "2026-11-24T10:00:02Z"},
    ]
    if outcome == "completed":
        events.append(
            {"uuid": callee, "status": "answered", "direction": "outbound", "timestamp": "2026-11-24T10:00:03Z"}
        )
        end = {"duration": str(seconds), "price": price, "rate": "0.01270000"}
    else:
        end = {}
    events.append(
        {"uuid": callee, "status": outcome, "direction": "outbound", "timestamp": "2026-11-24T10:09:00Z", **end}
    )
    events.append(
        {
            "uuid": caller,
            "status": "completed",
            "direction": "inbound",
            "duration": "999",
            "price": "0",
            "timestamp": "2026-11-24T10:09:01Z",
        }
    )
    for event in events:
        response = client.post("/voice/event", json={"conversation_uuid": conversation, "from": "Alice", **event})
        assert response.status_code == 204


@pytest.fixture
def reader(call_log):
    return call_log.reader


def test_summary_counts_answered_calls_by_their_callee_not_the_callers_leg(client, reader):
    post_call(client, "CON-a", "completed", 30, "0.00633333")
    post_call(client, "CON-b", "busy")
    post_call(client, "CON-c", "unanswered")
    summary = reader.summarize()
    assert (summary["calls"], summary["answered"]) == (3, 1)


def test_summary_spend_is_the_exact_sum_of_every_leg_price(client, reader):
    post_call(client, "CON-a", "completed", 30, "0.00633333")
    post_call(client, "CON-b", "completed", 60, "0.01270000")
    post_call(client, "CON-c", "completed", 1, "0.00000001")
    assert reader.summarize()["total_price"] == "0.01903334"


@pytest.mark.parametrize(("durations", "median"), [([30, 10, 20], 20), ([40, 10, 30, 20], 25), ([7], 7)])
def test_summary_median_duration_is_of_answered_calls_talk_time(client, reader, durations, median):
    for number, seconds in enumerate(durations):
        post_call(client, f"CON-{number}", "completed", seconds, "0.001")
    post_call(client, "CON-busy", "busy")
    assert reader.summarize()["median_duration"] == median


def test_summary_covers_the_filter_not_one_page(client, reader):
    post_call(client, "CON-a", "completed", 30, "0.01", to="447700900111")
    post_call(client, "CON-b", "completed", 50, "0.02", to="447700900222")
    post_call(client, "CON-c", "busy", to="447700900222")
    assert reader.summarize(number="447700900222") == {
        "calls": 2,
        "answered": 1,
        "total_price": "0.02",
        "median_duration": 50,
    }
    assert reader.summarize(status="busy")["calls"] == 1


def test_summary_of_an_empty_log_has_no_spend_or_median(reader):
    assert reader.summarize() == {"calls": 0, "answered": 0, "total_price": None, "median_duration": None}


def test_the_pages_list_refresh_leaves_the_summary_out_unless_asked(client):
    post_call(client, "CON-a", "completed", 30, "0.01")
    headers = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}
    refresh = client.get("/calls?partial=list", headers=headers).get_data(as_text=True)
    asked = client.get("/calls?partial=list&summary=1", headers=headers).get_data(as_text=True)
    assert 'data-conversation="CON-a"' in refresh and 'data-summary="calls"' not in refresh
    assert '<strong data-summary="calls">1</strong>' in asked
