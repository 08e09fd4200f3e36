"""Forwarding (issue #28) through the production server (serve.py) to a user's app in a process of its own
(support/receiver.py), which verifies every signature with the standardwebhooks package.

Each test sends distinct signed events (and answers), then counts: sent, committed (acknowledged 2xx, so stored),
delivered (their webhook-id answered 2xx by the receiver), lost (committed and never delivered) and duplicated
(delivered, answered 2xx, more than once). Lost must be 0 in every case, whatever fault the test makes.

The schedule is the specification's own (outbound.retry_schedule): the second attempt comes 5 s after the first, so
each fault here fails a delivery's first attempt (or its first two, with Retry-After) and the retry delivers it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from calllog.deliveries import DELIVERED, PENDING, STOPPED
from calllog.schema import Database, deliveries
from support.forwarding import SECRET, Receiver, receiving
from support.production import (
    CALL_LOG_TOKEN,
    Production,
    event_keys,
    event_payload,
    post_event,
    running_server,
    signed_answer,
    start_server,
    stop_group,
    wait_until,
)
from support.servers import run_env

EVENTS = 40
DELIVERY_SECONDS = 90


def forwarding_to(receiver: Receiver, **settings) -> dict:
    return {"FORWARD_URL": receiver.url, "FORWARD_SECRET": SECRET, "FORWARD_TIMEOUT": "2", **settings}


def send_events(server: Production, run: str, count: int = EVENTS) -> tuple[list[str], list[str]]:
    """Post `count` distinct signed events; the keys of all sent, and of those acknowledged 2xx (so committed)."""
    payloads = [event_payload(run, index) for index in range(count)]
    with requests.Session() as session:
        outcomes = [post_event(session, server.url, payload) for payload in payloads]
    committed = [payload for payload, got in zip(payloads, outcomes) if isinstance(got, int) and 200 <= got < 300]
    return event_keys(payloads), event_keys(committed)


def figures(sent: list[str], committed: list[str], receiver: Receiver) -> dict:
    delivered = receiver.delivered()
    return {
        "sent": len(sent),
        "committed": len(committed),
        "delivered": len(set(committed) & set(delivered)),
        "lost": len(set(committed) - set(delivered)),
        "duplicated": sum(count - 1 for count in delivered.values() if count > 1),
        "requests": len(receiver.requests()),
    }


def wait_delivered(receiver: Receiver, keys: list[str], server: Production | None = None) -> None:
    try:
        wait_until(
            lambda: set(keys) <= set(receiver.delivered()),
            DELIVERY_SECONDS,
            "every committed event delivered",
            server.process if server else None,
        )
    except AssertionError as error:
        missing = len(set(keys) - set(receiver.delivered()))
        raise AssertionError(f"{error}: {missing} not delivered\n{what_was_seen(receiver, server)}") from None


def what_was_seen(receiver: Receiver, server: Production | None) -> str:
    """What a failed wait shows: the receiver's state, the deliveries by state, and the server's last lines."""
    got = receiver.requests()
    alive = receiver.process is not None and receiver.process.poll() is None
    lines = [f"the receiver {'runs' if alive else 'has exited'} and got {len(got)} requests"]
    if server is not None:
        states = Counter(
            (row.status, row.attempts, row.lease_until is not None, (row.last_error or "")[:80])
            for row in delivery_rows(server.database_url)
        )
        lines += [f"  {count} x (status, attempts, leased, last error) {state}" for state, count in states.items()]
        lines.append("the server's output ends:\n" + server.output()[-3000:])
    return "\n".join(lines)


def delivery_rows(database_url: str) -> list:
    database = Database(database_url)
    try:
        with database.connect() as connection:
            return connection.execute(select(deliveries)).all()
    finally:
        database.close()


def report(name: str, counted: dict) -> None:
    print(f"\n{name}: " + ", ".join(f"{key} {value}" for key, value in counted.items()))


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'calls.db'}"


def test_every_event_and_answer_arrives_verified_with_its_key_as_a_stable_id(tmp_path):
    with (
        receiving(tmp_path) as receiver,
        running_server(tmp_path, sqlite_url(tmp_path), 1, **forwarding_to(receiver)) as server,
    ):
        sent, committed = send_events(server, "all")
        path, headers = signed_answer(1)
        assert requests.get(server.url + path, headers=headers, timeout=10).status_code == 200
        wait_delivered(receiver, committed, server)
        wait_until(lambda: len(receiver.requests()) >= len(committed) + 1, DELIVERY_SECONDS, "the answer delivered")
        endpoint = f'endpoint="{receiver.url}"'
        delivered_series = f'voice_forward_attempts_total{{{endpoint},outcome="delivered"}} {EVENTS + 1}.0'
        wait_until(lambda: delivered_series in scrape(server), 10, "/metrics counting every delivery")
        scraped = scrape(server)
    assert f"voice_forward_attempts_per_delivery_count{{{endpoint}}} {EVENTS + 1}.0" in scraped
    assert f'voice_forward_attempts_per_delivery_bucket{{{endpoint},le="1.0"}} {EVENTS + 1}.0' in scraped
    assert f"voice_forward_oldest_pending_seconds{{{endpoint}}}" in scraped
    counted = figures(sent, committed, receiver)
    report("all delivered", counted)
    got = receiver.requests()
    assert all(request["verified"] for request in got), "a request did not verify"
    assert counted == {**counted, "committed": EVENTS, "delivered": EVENTS, "lost": 0, "duplicated": 0}
    events = [request for request in got if request["type"] == "call.event.completed"]
    assert {request["id"] for request in events} == set(committed)
    completed = next(request["data"] for request in events if request["data"]["event"]["status"] == "completed")
    assert completed["leg"]["uuid"] == completed["event"]["uuid"] and completed["leg"]["status"] == "completed"
    assert [request["type"] for request in got].count("call.answer.decided") == 1


def scrape(server: Production) -> str:
    return requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {CALL_LOG_TOKEN}"}, timeout=10).text


def test_receiver_down_then_back_gets_every_event_on_the_retry(tmp_path):
    receiver = Receiver(tmp_path)
    database_url = sqlite_url(tmp_path)
    with running_server(tmp_path, database_url, 1, **forwarding_to(receiver)) as server:
        sent, committed = send_events(server, "down")
        # Every first attempt has met the closed port; the second comes 5 s after it.
        wait_until(
            lambda: (
                sum(1 for row in delivery_rows(database_url) if row.attempts >= 1 and row.lease_until is None)
                == len(committed)
            ),
            DELIVERY_SECONDS,
            "every first attempt made",
        )
        rows = delivery_rows(database_url)
        assert {row.status for row in rows} == {PENDING} and all("cannot connect" in row.last_error for row in rows)
        receiver.start()
        try:
            wait_delivered(receiver, committed, server)
        finally:
            receiver.stop()
    counted = figures(sent, committed, receiver)
    report("receiver down then back", counted)
    assert counted["committed"] == EVENTS and counted["lost"] == 0 and counted["duplicated"] == 0
    assert {row.status for row in delivery_rows(database_url)} == {DELIVERED}


@pytest.mark.parametrize(
    ("options", "attempts", "name"),
    [
        (("--fail-first", "1", "--status", "500"), 2, "500 once"),
        # Two refusals: the third attempt would be 5 minutes away on the schedule, so only Retry-After delivers it.
        (("--fail-first", "2", "--status", "429", "--retry-after", "1"), 3, "429 with Retry-After 1, twice"),
        (("--fail-first", "2", "--status", "503", "--retry-after", "1"), 3, "503 with Retry-After 1, twice"),
        (("--hang-first", "1"), 2, "hanging past FORWARD_TIMEOUT once"),
    ],
)
def test_a_failed_attempt_is_tried_again_until_delivered(tmp_path, options, attempts, name):
    database_url = sqlite_url(tmp_path)
    with (
        receiving(tmp_path, *options) as receiver,
        running_server(tmp_path, database_url, 1, **forwarding_to(receiver)) as server,
    ):
        sent, committed = send_events(server, "retry")
        wait_delivered(receiver, committed, server)
    counted = figures(sent, committed, receiver)
    report(name, counted)
    assert counted["committed"] == EVENTS and counted["lost"] == 0 and counted["duplicated"] == 0
    assert counted["requests"] == EVENTS * attempts
    rows = delivery_rows(database_url)
    assert {row.status for row in rows} == {DELIVERED} and {row.attempts for row in rows} == {attempts}


def test_410_gone_stops_the_endpoint_keeps_every_delivery_and_replay_sends_them_again(tmp_path):
    database_url = sqlite_url(tmp_path)
    gone = Receiver(tmp_path).start("--fail-first", "1000", "--status", "410")
    settings = forwarding_to(gone)
    try:
        with running_server(tmp_path, database_url, 1, **settings) as server:
            sent, committed = send_events(server, "gone")
            wait_until(
                lambda: {row.status for row in delivery_rows(database_url)} == {STOPPED},
                DELIVERY_SECONDS,
                "every delivery stopped",
            )
            asked = len(gone.requests())
    finally:
        gone.stop()
    rows = delivery_rows(database_url)
    # Kept, not dropped: one delivery per committed event, every one stopped, and only the few in flight asked.
    assert sorted(row.webhook_id for row in rows) == sorted(committed)
    assert asked <= 8, f"{asked} requests after the endpoint said 410 Gone"
    state = flask_forward(tmp_path, database_url, settings)
    assert "STOPPED since" in state.stdout and "410 Gone" in state.stdout, state.stdout + state.stderr
    back = Receiver(tmp_path, gone.port).start()
    try:
        replayed = flask_forward(tmp_path, database_url, settings, "replay", "--since", "1h", "--status", "stopped")
        assert replayed.returncode == 0 and f"replaying {len(committed)} stopped" in replayed.stdout, replayed.stderr
        with running_server(tmp_path, database_url, 1, **settings) as server:
            wait_delivered(back, committed, server)
    finally:
        back.stop()
    counted = figures(sent, committed, back)
    report("410 Gone, then replayed", {**counted, "asked before the stop": asked})
    assert counted["lost"] == 0 and counted["duplicated"] == 0


def flask_forward(tmp_path: Path, database_url: str, settings: dict, *args: str) -> subprocess.CompletedProcess:
    environment = run_env(DATABASE_URL=database_url, FLASK_APP="app", INSTANCE_PATH=str(tmp_path / "cli"), **settings)
    return subprocess.run(
        [sys.executable, "-m", "flask", "forward", *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_server_killed_with_sigkill_mid_delivery_and_restarted_loses_nothing(tmp_path):
    database_url = sqlite_url(tmp_path)
    # Each first attempt hangs: the server is killed while deliveries are in flight.
    with receiving(tmp_path, "--hang-first", "1") as receiver:
        settings = forwarding_to(receiver)
        server = start_server(tmp_path / "first", database_url, 1, **settings)
        try:
            sent, committed = send_events(server, "killed")
            # Killed once every claimed delivery has reached the receiver (and hangs there). A claim counts as an
            # attempt, so one killed before it was sent would meet its hang at its second attempt, and its next try
            # would come 5 minutes later, on the schedule, past this test's wait.
            wait_until(lambda: _claims_all_received(database_url, receiver), 30, "a delivery in flight")
            in_flight = sum(1 for row in delivery_rows(database_url) if row.lease_until is not None)
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()
        finally:
            stop_group(server.process)
        with running_server(tmp_path / "second", database_url, 1, **settings) as again:
            wait_delivered(receiver, committed, again)
    counted = figures(sent, committed, receiver)
    report("kill -9 mid-delivery, restarted", {**counted, "in flight at the kill": in_flight})
    assert in_flight >= 1
    assert counted["committed"] == EVENTS and counted["lost"] == 0


def _post_one(server: Production, payload: dict) -> int | str:
    with requests.Session() as session:
        return post_event(session, server.url, payload)


def _claims_all_received(database_url: str, receiver: Receiver) -> bool:
    claimed = {row.webhook_id for row in delivery_rows(database_url) if row.lease_until is not None}
    return bool(claimed) and claimed <= {request["id"] for request in receiver.requests()}


def test_postgresql_stopped_and_started_loses_no_delivery(tmp_path, own_postgres):
    with (
        receiving(tmp_path) as receiver,
        running_server(tmp_path, own_postgres.url, 1, **forwarding_to(receiver)) as server,
    ):
        sent, committed = send_events(server, "before")
        sent += event_keys([event_payload("probe", 0)])
        own_postgres.stop()
        try:
            during_sent, during_committed = send_events(server, "during", 10)
        finally:
            own_postgres.start()
        wait_until(lambda: _post_one(server, event_payload("probe", 0)) == 204, 60, "events stored again")
        after_sent, after_committed = send_events(server, "after")
        committed_all = committed + during_committed + after_committed + event_keys([event_payload("probe", 0)])
        wait_delivered(receiver, committed_all, server)
    counted = figures(sent + during_sent + after_sent, committed_all, receiver)
    report(
        "PostgreSQL stopped and started", {**counted, "refused while down": len(during_sent) - len(during_committed)}
    )
    assert len(during_committed) < len(during_sent), "the outage refused nothing"
    assert counted["lost"] == 0 and all(request["verified"] for request in receiver.requests())


def test_two_servers_on_one_postgresql_make_each_attempt_once(tmp_path, own_postgres):
    with receiving(tmp_path) as receiver:
        settings = forwarding_to(receiver)
        with (
            running_server(tmp_path / "a", own_postgres.url, 1, **settings) as first,
            running_server(tmp_path / "b", own_postgres.url, 1, **settings) as second,
        ):
            sent_a, committed_a = send_events(first, "a")
            sent_b, committed_b = send_events(second, "b")
            wait_delivered(receiver, committed_a + committed_b, first)
    counted = figures(sent_a + sent_b, committed_a + committed_b, receiver)
    report("two servers, one PostgreSQL", counted)
    assert counted["lost"] == 0 and counted["duplicated"] == 0 and counted["requests"] == 2 * EVENTS
