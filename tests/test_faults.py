"""Faults under load (issues #15, #24): the production server, signatures on, loses no acknowledged event and no
answer decision it gave, and recovers by itself when its call-log writer or a worker is killed with SIGKILL, or its
PostgreSQL stops for a few seconds.

16 connections post distinct signed events throughout, and one more asks for signed answers. Every 2xx event must be
stored exactly once, and every answer that got its NCCO recorded exactly once; every other event answer must be a
503 (Vonage retries it) or, while a worker is being killed, a broken connection; and after each fault the events
must be acknowledged again within RECOVERY_SECONDS, by the same server (no restart). The answers are held while a
worker is killed: a worker keeps its last 100 ms of answer decisions in memory, and kill -9 takes them with it.
"""

import os
import signal
import time
from dataclasses import dataclass, field

import requests

from conftest import call_log_reader
from support.production import (
    CONNECTION_ERROR,
    AnswerLoad,
    Load,
    Production,
    event_keys,
    event_payload,
    post_event,
    running_server,
    stored_answer_conversations,
    wait_until,
)

CONNECTIONS = 16
MINIMUM_EVENTS = 3000
ACKNOWLEDGED_BETWEEN_FAULTS = 300
RECOVERY_SECONDS = 30
DATABASE_DOWN_SECONDS = 3
AFTER_FAULTS_EVENTS = 40
WORKER_KILLED = "worker killed"


@dataclass
class FaultLog:
    """What the faults did and how long the server took to acknowledge events again after each."""

    recovered_after: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def acknowledged_in(load: Load, phase: str) -> int:
    return sum(1 for got, at in load.snapshot().values() if at == phase and 200 <= got_int(got) < 300)


def got_int(outcome) -> int:
    return outcome if isinstance(outcome, int) else 0


def resume(server: Production, load: Load, phase: str, faults: FaultLog, since: float) -> None:
    """Wait until events are acknowledged again in `phase`, within RECOVERY_SECONDS of `since` (the fault's end);
    record when the first was, then let ACKNOWLEDGED_BETWEEN_FAULTS of them go by."""
    wait_until(lambda: acknowledged_in(load, phase) >= 1, RECOVERY_SECONDS, f"a 204 after '{phase}'", server.process)
    faults.recovered_after[phase] = time.monotonic() - since
    wait_until(
        lambda: acknowledged_in(load, phase) >= ACKNOWLEDGED_BETWEEN_FAULTS,
        RECOVERY_SECONDS,
        f"events acknowledged steadily after '{phase}'",
        server.process,
    )


def kill_writer(server: Production, load: Load, faults: FaultLog) -> None:
    (writer,) = server.roles()["writer"]
    load.phase = "writer killed"
    since = time.monotonic()
    os.kill(writer, signal.SIGKILL)
    wait_until(lambda: server.roles()["writer"] not in ([], [writer]), RECOVERY_SECONDS, "a new writer", server.process)
    resume(server, load, "writer killed", faults, since)
    faults.notes.append(f"writer {writer} killed, now {server.roles()['writer']}")


def answers_all_stored(server: Production, answers: AnswerLoad) -> bool:
    return sum(stored_answer_conversations(server.database_url, f"CON-a-{answers.run}-").values()) >= len(
        answers.answered
    )


def kill_worker(server: Production, load: Load, faults: FaultLog) -> None:
    workers = server.roles()["worker"]
    assert len(workers) == server.workers, f"workers before the kill: {workers}"
    load.answers.pause()
    wait_until(lambda: answers_all_stored(server, load.answers), RECOVERY_SECONDS, "the answers stored", server.process)
    load.phase = WORKER_KILLED
    since = time.monotonic()
    os.kill(workers[0], signal.SIGKILL)

    def respawned() -> bool:
        now = server.roles()["worker"]
        return len(now) == server.workers and workers[0] not in now

    wait_until(respawned, RECOVERY_SECONDS, "granian respawning the worker", server.process)
    load.answers.resume()
    resume(server, load, WORKER_KILLED, faults, since)
    faults.notes.append(f"worker {workers[0]} killed, workers now {server.roles()['worker']}")


def stopping_database(postgres):
    """The fault that stops `postgres` for DATABASE_DOWN_SECONDS (events are refused meanwhile) and starts it."""

    def stop_database(server: Production, load: Load, faults: FaultLog) -> None:
        load.phase = "database stopped"
        refused_before = load.count(503)
        down_since = time.monotonic()
        postgres.stop()
        # The outage lasts a few seconds, and at least some events must have met it.
        wait_until(
            lambda: time.monotonic() - down_since >= DATABASE_DOWN_SECONDS and load.count(503) > refused_before,
            RECOVERY_SECONDS,
            "events refused while the database is down",
            server.process,
        )
        faults.notes.append(f"database down {time.monotonic() - down_since:.1f} s")
        load.phase = "database started"
        since = time.monotonic()
        postgres.start()
        resume(server, load, "database started", faults, since)

    return stop_database


def after_faults_all_acknowledged(server: Production, run: str) -> list[dict]:
    """Events sent one by one on fresh connections after the faults: each must get 204."""
    payloads = [event_payload(run, index) for index in range(AFTER_FAULTS_EVENTS)]
    outcomes = []
    for payload in payloads:
        with requests.Session() as session:
            outcomes.append(post_event(session, server.url, payload))
    assert outcomes == [204] * len(payloads), f"after the faults: {outcomes}"
    return payloads


def run_under_faults(server: Production, faults: list, run: str) -> tuple[Load, FaultLog]:
    """Post events from CONNECTIONS threads while each fault happens in turn, then until MINIMUM_EVENTS are sent."""
    load = Load(server.url, run, CONNECTIONS).start()
    load.answers = AnswerLoad(server.url, run).start()
    log = FaultLog()
    try:
        resume(server, load, load.phase, log, time.monotonic())
        log.recovered_after.clear()  # the start is no recovery
        for fault in faults:
            fault(server, load, log)
        load.phase = "after the faults"
        wait_until(lambda: len(load.snapshot()) >= MINIMUM_EVENTS, 120, "enough events sent", server.process)
    finally:
        load.answers.stop()
        load.stop()
    wait_until(lambda: answers_all_stored(server, load.answers), RECOVERY_SECONDS, "the answers stored", server.process)
    return load, log


def assert_same_server_recovered(server: Production, faults: FaultLog) -> None:
    assert server.process.poll() is None, "the server exited"
    roles = server.roles()
    assert len(roles["writer"]) == 1 and len(roles["worker"]) == server.workers, f"processes after the faults: {roles}"
    if any("writer" in note for note in faults.notes):
        assert "the call-log writer exited with -9; restarting it" in server.output()


def check_call_log(server: Production, load: Load, faults: FaultLog, after: list[dict], label: str) -> None:
    """Every acknowledged event stored once, nothing else stored; only 503s and (worker kill) broken connections."""
    outcomes = load.snapshot()
    tally = load.tally()
    sent = load.payloads() + after
    acknowledged_payloads = [event_payload(load.run, i) for i, (got, _) in outcomes.items() if got_int(got) // 100 == 2]
    acknowledged = set(event_keys(acknowledged_payloads + after))
    with call_log_reader(server.database_url) as reader:
        stored = reader.stored_event_keys(event_keys(sent))
        rows = reader.count_events()
    lost = acknowledged - stored
    answers = load.answers
    recorded = stored_answer_conversations(server.database_url, f"CON-a-{answers.run}-")
    answers_lost = set(answers.answered) - set(recorded)
    answers_twice = sorted(conversation for conversation, count in recorded.items() if count > 1)
    broken_elsewhere = sorted({phase for got, phase in outcomes.values() if got == CONNECTION_ERROR} - {WORKER_KILLED})
    figures = (
        f"{label}: sent {len(sent)}, acknowledged {len(acknowledged)}, stored {len(stored)} (rows {rows}), "
        f"lost {len(lost)}, 503s {tally[503]}, connection errors {tally[CONNECTION_ERROR]}, "
        f"answers given {len(answers.answered)} (other outcomes {dict(answers.other)}), recorded {len(recorded)}, "
        f"lost {len(answers_lost)}, recorded twice {len(answers_twice)}, "
        f"outcomes {dict(tally)}; first 204 after (s) "
        f"{ {phase: round(seconds, 2) for phase, seconds in faults.recovered_after.items()} }; {'; '.join(faults.notes)}"
    )
    print(f"\n{figures}")
    assert len(lost) == 0, f"acknowledged but not stored: {len(lost)}; {figures}"
    assert not answers_lost and not answers_twice, f"answer decisions lost or doubled; {figures}"
    assert set(recorded) <= set(answers.answered), f"answer decisions recorded that got no 200; {figures}"
    assert rows == len(stored), f"rows that are not one of the events sent, once: {rows - len(stored)}; {figures}"
    assert set(tally) <= {204, 503, CONNECTION_ERROR}, f"answers other than 204, 503, a broken connection; {figures}"
    assert not broken_elsewhere, f"broken connections outside the worker kill, in {broken_elsewhere}; {figures}"


def test_sqlite_server_keeps_every_acknowledged_event_when_its_writer_and_a_worker_are_killed(tmp_path):
    with running_server(tmp_path / "server", f"sqlite:///{tmp_path / 'calls.db'}") as server:
        load, faults = run_under_faults(server, [kill_writer, kill_worker], "sqlite")
        after = after_faults_all_acknowledged(server, "sqlite-after")
        assert_same_server_recovered(server, faults)
    check_call_log(server, load, faults, after, "SQLite")


def test_postgresql_server_keeps_every_acknowledged_event_through_killed_processes_and_a_database_outage(
    tmp_path, own_postgres
):
    with running_server(tmp_path / "server", own_postgres.url) as server:
        faults = [kill_writer, kill_worker, stopping_database(own_postgres)]
        load, fault_log = run_under_faults(server, faults, "postgresql")
        after = after_faults_all_acknowledged(server, "postgresql-after")
        assert_same_server_recovered(server, fault_log)
    check_call_log(server, load, fault_log, after, "PostgreSQL")
