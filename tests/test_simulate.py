"""The call simulator: the events it models, whole calls against the real server, and servers that fail."""

import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import CALL_LOG_TOKEN
from events import RING_OUTCOMES
from ncco import CallPlan, app_connect_ncco, connect_ncco, refusal_ncco
from simulator.client import Simulator
from simulator.load import percentile, run_load
from simulator.model import Scenario, answer_request, call_events, scenario_events, scenario_problem
from support.servers import run_server
from vonage_helper.ncco_models import parse_ncco

SECRET = "simulator-secret-0123456789abcdef0123"
START = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)


def events_for(ncco, outcome="answered", duration=5):
    return call_events(parse_ncco(ncco), "Alice", outcome, duration, "CON-1", "in-1", "out-1", START)


def test_answered_call_has_both_legs_like_the_tutorial():
    events = events_for(connect_ncco("447700900000", CallPlan()), duration=90)
    assert [(e["direction"], e["status"]) for e in events] == [
        ("inbound", "started"),
        ("inbound", "ringing"),
        ("inbound", "answered"),
        ("outbound", "started"),
        ("outbound", "ringing"),
        ("outbound", "answered"),
        ("outbound", "completed"),
        ("inbound", "completed"),
    ]
    completed = events[6]
    assert completed["duration"] == "90" and completed["rate"] == "0.01270000"
    assert Decimal(completed["price"]) == Decimal("0.01270000") * 90 / 60
    assert completed["to"] == "447700900000" and events[0]["to"] == "Alice"
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


@pytest.mark.parametrize("outcome", [o for o in RING_OUTCOMES if o != "answered"])
def test_failed_outcomes_end_the_phone_leg_with_that_status(outcome):
    events = events_for(connect_ncco("447700900000", CallPlan()), outcome)
    outbound = [e for e in events if e["direction"] == "outbound"]
    assert [e["status"] for e in outbound] == ["started", "ringing", outcome]
    assert events[-1]["status"] == "completed" and events[-1]["direction"] == "inbound"


def test_ncco_without_connect_ends_after_its_talk():
    events = events_for(refusal_ncco("no number to call was given"))
    assert [e["status"] for e in events] == ["started", "ringing", "answered", "completed"]
    assert {e["direction"] for e in events} == {"inbound"}


def test_percentile_is_nearest_rank():
    assert percentile([1, 2, 3, 4], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.99) == 99
    assert percentile([], 0.5) == 0.0


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory):
    database = tmp_path_factory.mktemp("simulate") / "calls.db"
    with run_server(
        DATABASE_URL=f"sqlite:///{database}", VONAGE_SIGNATURE_SECRET=SECRET, CALL_LOG_TOKEN=CALL_LOG_TOKEN
    ) as url:
        yield url


def recorded(url, conversation):
    """The call as the call log holds it, once its answer decision (stored without delaying the NCCO) is in."""
    deadline = time.monotonic() + 10
    while True:
        response = requests.get(
            f"{url}/api/calls/{conversation}", headers={"Authorization": f"Bearer {CALL_LOG_TOKEN}"}, timeout=10
        )
        assert response.status_code == 200
        call = response.json()
        if call["answers"] or time.monotonic() > deadline:
            return call
        time.sleep(0.02)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("outcome", RING_OUTCOMES)
def test_every_outcome_is_recorded_exactly_as_simulated(signed_server, outcome, method):
    result = Simulator(signed_server, SECRET, method).call("447700900000", outcome, duration=42)
    assert result.ok, result.problems
    call = recorded(signed_server, result.conversation_uuid)
    legs = {leg["direction"]: leg for leg in call["legs"]}
    assert legs["outbound"]["status"] == ("completed" if outcome == "answered" else outcome)
    assert legs["inbound"]["status"] == "completed"
    sent = sorted(json.dumps(e.payload, sort_keys=True) for e in result.events)
    stored = sorted(json.dumps(e["payload"], sort_keys=True) for leg in call["legs"] for e in leg["events"])
    assert stored == sent
    assert all(e["verified"] for leg in call["legs"] for e in leg["events"])
    assert call["answers"][0]["connected"] is True and call["answers"][0]["caller"] == "Alice"
    if outcome == "answered":
        assert legs["outbound"]["duration"] == 42
        assert Decimal(call["total_price"]) == Decimal("0.01270000") * 42 / 60


def test_refused_call_is_recorded_with_its_reason(signed_server):
    result = Simulator(signed_server, SECRET).call("+44 909 879 0000")
    assert result.ok
    assert "premium rate" in result.plan
    call = recorded(signed_server, result.conversation_uuid)
    assert call["answers"][0]["connected"] is False
    assert [leg["direction"] for leg in call["legs"]] == ["inbound"]


def test_unsigned_simulation_against_a_signed_server_says_this_shell_has_no_secret(signed_server):
    result = Simulator(signed_server, None).call("447700900000")
    assert not result.ok
    assert result.answer.problem == (
        "answered 503: the server checks signatures and this shell has no VONAGE_SIGNATURE_SECRET: set the "
        "server's secret here too (export it, or put it in this folder's .env)"
    )


def test_a_simulation_signed_with_another_secret_says_the_secrets_differ(signed_server):
    result = Simulator(signed_server, "another-secret-0123456789abcdef").call("447700900000")
    assert not result.ok
    assert result.answer.problem == (
        "answered 401: the server refused this shell's signature: is VONAGE_SIGNATURE_SECRET here the server's?"
    )


def test_load_mode_runs_every_call_whole(signed_server):
    report = run_load(Simulator(signed_server, SECRET), "447700900000", calls=6, concurrency=3)
    assert report.failures == []
    assert (len(report.answer_ms), len(report.event_ms)) == (6, 48)
    assert report.calls_per_second > 0


@pytest.mark.parametrize("settings_env", [{"VONAGE_SIGNATURE_SECRET": SECRET}])
def test_load_mode_cli_signs_with_the_servers_secret_and_prints_the_figures(signed_server, runner):
    output = runner.invoke(
        args=["simulate", "447700900000", "--url", signed_server, "--calls", "4", "--concurrency", "2"]
    )
    assert output.exit_code == 0, output.output
    assert ", signed" in output.output
    assert "calls/s" in output.output and "answer       p50" in output.output and "failures     0" in output.output


def test_load_mode_cli_exits_nonzero_on_failures(signed_server, runner):
    output = runner.invoke(
        args=["simulate", "447700900000", "--url", signed_server, "--calls", "2", "--concurrency", "2"]
    )
    assert output.exit_code == 1
    assert "failures     2" in output.output


class QuietHandler(BaseHTTPRequestHandler):
    """A test double's HTTP handler: answers with `_reply` and logs nothing."""

    def _reply(self, status, kind, body):
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class BadServer(QuietHandler):
    behaviour = "500"
    release = threading.Event()

    def do_GET(self):
        if self.behaviour == "hang":
            self.release.wait(10)
            return
        if self.behaviour == "500":
            body, status, kind = b"Internal Server Error", 500, "text/plain"
        elif self.behaviour == "invalid-ncco":
            body, status, kind = (
                json.dumps([{"action": "connect", "endpoint": [{"type": "phone", "number": "+44"}]}]).encode(),
                200,
                "application/json",
            )
        else:
            body, status, kind = b"<html>hi</html>", 200, "text/html"
        self._reply(status, kind, body)


@pytest.fixture
def bad_server(request):
    handler = type("Handler", (BadServer,), {"behaviour": request.param, "release": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    handler.release.set()
    server.shutdown()


@pytest.mark.parametrize(
    "bad_server, message",
    [
        ("500", "answered 500"),
        ("invalid-ncco", "the NCCO is invalid"),
        ("html", "not application/json"),
        ("hang", "no response within 0.3 s"),
    ],
    indirect=["bad_server"],
)
def test_a_failing_server_makes_the_simulator_exit_nonzero_with_a_clear_message(runner, bad_server, message):
    result = runner.invoke(args=["simulate", "447700900000", "--url", bad_server, "--answer-timeout", "0.3"])
    assert result.exit_code == 1
    assert message in result.output
    assert "PROBLEM" in result.output


def test_unreachable_server_is_named(runner):
    from support.servers import free_port

    result = runner.invoke(args=["simulate", "447700900000", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "cannot reach" in result.output


# --- the call shapes (--scenario) -----------------------------------------------------------------------------

SYNCHRONOUS_PLAN = CallPlan(event_url="http://127.0.0.1:3000/voice/event/connect")


def test_inbound_events_have_the_phone_on_the_callers_leg_and_the_user_on_the_leg_rung():
    scenario = Scenario("inbound", "447700900001", caller_number="447700900123", duration=60)
    ncco = app_connect_ncco("Alice", SYNCHRONOUS_PLAN, "447700900123")
    events = scenario_events(parse_ncco(ncco), scenario, "CON-1", "in-1", "out-1", START)
    caller, rung = events[0], events[3]
    assert (caller["from"], caller["to"], caller["direction"]) == ("447700900123", "447700900001", "inbound")
    assert (rung["from"], rung["to"], rung["direction"]) == ("447700900123", "Alice", "outbound")
    assert [e["status"] for e in events if e["direction"] == "outbound"] == [
        "started",
        "ringing",
        "answered",
        "completed",
    ]
    caller_completed, rung_completed = events[-1], events[-2]
    assert caller_completed["rate"] == "0.00390000" and Decimal(caller_completed["price"]) > 0
    assert (rung_completed["price"], rung_completed["from"]) == ("0", "447700900123")


def test_app_to_app_events_ring_the_user_by_name():
    events = scenario_events(
        parse_ncco(app_connect_ncco("Bob", SYNCHRONOUS_PLAN)), Scenario("app-to-app", "Bob"), "C", "i", "o", START
    )
    assert events[0]["to"] == "Alice" and events[0]["from"] is None
    assert {(e["from"], e["to"]) for e in events if e["direction"] == "outbound"} == {("Alice", "Bob")}


def test_the_answer_request_is_a_phones_or_a_client_sdk_users():
    phone = answer_request(Scenario("inbound", "447700900001"), "CON-1", "in-1")
    user = answer_request(Scenario("app-to-app", "Bob"), "CON-1", "in-1")
    assert (phone["from"], phone["to"], "from_user" in phone) == ("447700900123", "447700900001", False)
    assert (user["from_user"], user["to"], "from" in user) == ("Alice", "Bob", False)


@pytest.mark.parametrize(
    "scenario, ncco, problem",
    [
        (Scenario("inbound", "447700900001"), refusal_ncco("nobody is available"), "INBOUND_ROUTES"),
        (Scenario("app-to-app", "Bob"), app_connect_ncco("Carol", CallPlan()), "rang the app user Carol, not Bob"),
        (Scenario("busy"), connect_ncco("447700900000", CallPlan()), "not synchronous"),
        (Scenario("busy"), refusal_ncco("calls to that country are not allowed"), "no callee can be busy"),
    ],
)
def test_an_ncco_that_does_not_take_the_scenarios_call_is_named(scenario, ncco, problem):
    assert problem in scenario_problem(scenario, parse_ncco(ncco))


@pytest.mark.parametrize("settings_env", [{"VONAGE_SIGNATURE_SECRET": SECRET}])
def test_busy_scenario_cli_shows_the_caller_told_why(signed_server, runner):
    output = runner.invoke(args=["simulate", "--scenario", "busy", "--url", signed_server])
    assert output.exit_code == 0, output.output
    assert "simulating a call (busy) from Alice to 447700900000" in output.output
    lines = output.output.splitlines()
    busy = next(index for index, line in enumerate(lines) if line.startswith("event   busy (outbound)"))
    assert "->  200" in lines[busy]
    assert lines[busy + 2] == "told    say 'The number you called is busy. Please try again later.'"


@pytest.mark.parametrize("settings_env", [{"VONAGE_SIGNATURE_SECRET": SECRET}])
def test_inbound_scenario_against_a_server_with_no_route_fails_naming_the_settings(signed_server, runner):
    output = runner.invoke(args=["simulate", "--scenario", "inbound", "--url", signed_server])
    assert output.exit_code == 1
    assert "simulating a call (inbound) from 447700900123 to 447700900001" in output.output
    assert "PROBLEM the server did not ring an app user" in output.output
    assert "INBOUND_ROUTES or INBOUND_DEFAULT_USER" in output.output


class SilentOutcomeServer(QuietHandler):
    """A server that makes its connects synchronous, then answers their outcome with `outcome_reply`."""

    outcome_reply = (204, "", b"")

    def do_GET(self):
        host = self.headers["Host"]
        ncco = connect_ncco("447700900000", CallPlan(event_url=f"http://{host}/voice/event/connect"))
        self._reply(200, "application/json", json.dumps(ncco).encode())

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._reply(*(self.outcome_reply if body["status"] == "busy" else (204, "", b"")))


@pytest.fixture
def outcome_server(request):
    handler = type("Handler", (SilentOutcomeServer,), {"outcome_reply": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    "outcome_server, problem",
    [
        ((204, "", b""), "the busy outcome got no NCCO back, so the caller is not told why"),
        ((200, "application/json", b'[{"action": "talk"}]'), "busy (outbound): the reply is not a valid NCCO"),
        ((200, "text/plain", b"busy"), "busy (outbound): the reply has Content-Type 'text/plain'"),
    ],
    indirect=["outcome_server"],
)
def test_busy_scenario_fails_when_the_caller_is_not_told_why(outcome_server, problem):
    result = Simulator(outcome_server).play(Scenario("busy"))
    assert not result.ok
    assert any(problem in found for found in result.problems), result.problems
