"""Many instances (#15): two production servers behind a real nginx, sharing one PostgreSQL.

Vonage may deliver an event more than once, out of order, and to any server behind the balancer. Here every
event of many calls is delivered two or three times, straight to each server and through the balancer, in
bursts from many threads, so that both servers' call-log writers fold the same legs at the same moment with
the events in opposite orders: the case where two transactions that take their locks in different orders
deadlock. Each server runs as `make run` starts it (serve.py: granian workers and one call-log writer), with
its output kept so that the tests can read what it logged."""

import contextlib
import http.client
import json
import random
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import call_log_reader
from support.balancer import balancer_log, nginx_binary, run_balancer
from support.calls import conversation_events
from support.pg import fresh_postgres_url
from support.servers import CHILD_FOLDER, SERVE, free_port, run_env, wait_until_listening

CONVERSATIONS = 600
EVENTS_PER_CONVERSATION = 5
THREADS = 40
# Calls whose deliveries go out at once (see bursts): about as many deliveries as threads.
CALLS_PER_BURST = 3
SEED = 15


@dataclass
class Cluster:
    balancer: str
    servers: list[str]
    database_url: str
    folder: Path

    def server_logs(self) -> list[str]:
        return [(self.folder / f"server-{index}.log").read_text(errors="replace") for index in (0, 1)]


@contextlib.contextmanager
def logged_server(log_path: Path, **settings):
    """The production server (serve.py) on a free port, its output in `log_path`; yields its base URL."""
    port = free_port()
    with open(log_path, "wb") as output:
        process = subprocess.Popen(
            SERVE,
            cwd=CHILD_FOLDER,
            env=run_env(PORT=str(port), **settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_until_listening(port, process)
        except AssertionError as error:
            raise AssertionError(f"{error}: {log_path.read_text(errors='replace')}") from None
        yield f"http://127.0.0.1:{port}"
    finally:
        # Stopped the way a service manager stops it; the writer commits what it holds, and the log is whole.
        process.terminate()
        process.wait(timeout=20)


@contextlib.contextmanager
def many_instances(folder: Path):
    """Two servers (two workers each) on one fresh PostgreSQL, behind nginx; yields the Cluster."""
    nginx_binary()  # without nginx: skipped (failed in CI) before anything starts
    database_url = fresh_postgres_url()
    settings = {"DATABASE_URL": database_url, "WORKERS": "2", "LOG_FORMAT": "json"}
    with (
        logged_server(folder / "server-0.log", **settings) as first,
        logged_server(folder / "server-1.log", **settings) as second,
        run_balancer(folder / "nginx", [first, second]) as balancer,
    ):
        yield Cluster(balancer, [first, second], database_url, folder)


def request(base_url: str, method: str, path: str, payload: dict | None = None) -> tuple[int, dict, bytes]:
    """One request on a connection of its own: status, headers (lower-case names) and body."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {} if payload is None else {"Content-Type": "application/json"}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def bursts(cluster: Cluster) -> list[list[tuple[str, dict]]]:
    """Every event of every call, in bursts of a few calls' events sent all at once. Each event goes straight
    to both servers and, for half of them, a third time through the balancer. Each call's events are shuffled:
    one server gets them in that order, the other backwards, so both fold the same legs at the same moment with
    the events in opposite orders."""
    rng = random.Random(SEED)
    first, second = cluster.servers
    planned: list[list[tuple[str, dict]]] = []
    for burst in range(0, CONVERSATIONS, CALLS_PER_BURST):
        forwards, backwards = [], []
        for index in range(burst, min(burst + CALLS_PER_BURST, CONVERSATIONS)):
            order = rng.sample(conversation_events(index), EVENTS_PER_CONVERSATION)
            forwards += [(first, event) for event in order]
            backwards += [(second, event) for event in reversed(order)]
        deliveries = [delivery for pair in zip(forwards, backwards) for delivery in pair]
        for _, event in rng.sample(forwards, len(forwards) // 2):
            deliveries.insert(rng.randrange(len(deliveries) + 1), (cluster.balancer, event))
        planned.append(deliveries)
    return planned


def deliver_all(planned: list[list[tuple[str, dict]]]) -> list[int]:
    """POST each burst's deliveries to /voice/event from THREADS threads at once, one burst after another;
    the statuses, in order."""

    def deliver(delivery: tuple[str, dict]) -> int:
        place, event = delivery
        return request(place, "POST", "/voice/event", event)[0]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return [status for burst in planned for status in pool.map(deliver, burst)]


def identity(event: dict) -> str:
    return json.dumps(event, sort_keys=True)


def log_problems(log_text: str) -> list[str]:
    """Lines of a server's output that mean something went wrong: errors, tracebacks, and any batch that
    failed (a batch the writer had to split after a deadlock, or any other cause). A deadlock that was
    tried again and then committed is not a problem: that is what the committer is built to do."""
    problems = []
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            if "Traceback" in line or "[ERROR]" in line or "deadlock" in line.lower():
                problems.append(line)
            continue
        message = str(entry.get("message", ""))
        failed_batch = "failed" in message and "batch" in message
        unretried_deadlock = "deadlock" in message.lower() and "trying it again" not in message
        if entry.get("level") in ("error", "critical") or "exception" in entry or failed_batch or unretried_deadlock:
            problems.append(line)
    return problems


@dataclass
class Traffic:
    """What one run of racing deliveries left behind, once both servers and the balancer have stopped."""

    planned: list[tuple[str, dict]]
    statuses: list[int]
    database_url: str
    server_logs: list[str]
    balancer_log: str

    def distinct(self) -> set[str]:
        return {identity(event) for _, event in self.planned}


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> Traffic:
    """Every call's events, repeated and reordered, delivered to two servers (directly and through the
    balancer) from many threads; run once for the tests below, which look at what it left behind."""
    folder = tmp_path_factory.mktemp("many-instances")
    with many_instances(folder) as cluster:
        planned = bursts(cluster)
        statuses = deliver_all(planned)
    flat = [delivery for burst in planned for delivery in burst]
    return Traffic(flat, statuses, cluster.database_url, cluster.server_logs(), balancer_log(folder / "nginx"))


@pytest.fixture(scope="module")
def stored_calls(traffic) -> list[dict]:
    """Every stored call with its legs and their events, as the call log shows them."""
    with call_log_reader(traffic.database_url) as reader:
        calls, more = reader.list_calls(limit=CONVERSATIONS)
        assert more is None, f"more than {CONVERSATIONS} calls stored"
        return [reader.get_call(call["conversation_uuid"]) for call in calls]


@pytest.fixture
def cluster(tmp_path):
    with many_instances(tmp_path) as running:
        yield running


def test_balancer_spreads_health_checks_over_both_servers_and_storage_is_ok(cluster):
    served_by = set()
    for _ in range(4):
        status, headers, body = request(cluster.balancer, "GET", "/health")
        health = json.loads(body)
        assert status == 200
        assert health["status"] == "ok"
        assert health["parts"]["storage"]["status"] == "ok"
        assert health["parts"]["storage"]["backend"] == "postgresql"
        served_by.add(headers["x-served-by"])
    assert served_by == {server.removeprefix("http://") for server in cluster.servers}


def test_every_event_is_delivered_repeatedly_to_both_servers_and_through_the_balancer(traffic):
    places_by_event: dict[str, set[str]] = {}
    for place, event in traffic.planned:
        places_by_event.setdefault(identity(event), set()).add(place)
    assert len(places_by_event) == CONVERSATIONS * EVENTS_PER_CONVERSATION
    assert {len(places) for places in places_by_event.values()} == {2, 3}
    assert len({place for places in places_by_event.values() for place in places}) == 3


def test_every_delivery_is_acknowledged_while_both_servers_fold_the_same_legs(traffic):
    failures = sorted({status for status in traffic.statuses if status != 204})
    assert failures == [], f"{len(traffic.planned)} deliveries: statuses other than 204 (no 503s): {failures}"


def test_every_distinct_event_is_stored_exactly_once(traffic, stored_calls):
    with call_log_reader(traffic.database_url) as reader:
        assert reader.count_events() == len(traffic.distinct()), "an event lost, or stored twice"
    stored = [identity(event["payload"]) for call in stored_calls for leg in call["legs"] for event in leg["events"]]
    assert len(stored) == len(set(stored))
    assert set(stored) == traffic.distinct()


def test_every_leg_ends_completed_with_its_duration_and_price_whatever_the_arrival_order(stored_calls):
    assert len(stored_calls) == CONVERSATIONS
    for call in stored_calls:
        index = int(call["conversation_uuid"][4:12])
        legs = {leg["direction"]: leg for leg in call["legs"]}
        assert len(call["legs"]) == 2, call["conversation_uuid"]
        assert (legs["outbound"]["status"], legs["inbound"]["status"]) == ("completed", "completed")
        assert (legs["outbound"]["duration"], legs["outbound"]["from"]) == (index, "Alice")
        assert (legs["inbound"]["duration"], legs["inbound"]["to"]) == (50, "Alice")
        assert Decimal(call["total_price"]) == Decimal(f"0.00{index:06d}")
        assert (len(legs["inbound"]["events"]), len(legs["outbound"]["events"])) == (2, 3)


def test_no_batch_fails_on_a_deadlock_and_no_server_logs_an_error_or_traceback(traffic):
    problems = {f"server {index}": log_problems(text) for index, text in enumerate(traffic.server_logs)}
    assert {server: lines for server, lines in problems.items() if lines} == {}
    assert not re.search(r"\[(error|crit|alert|emerg)\]", traffic.balancer_log), traffic.balancer_log
