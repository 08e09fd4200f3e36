"""Stopping the production server (issue #15): Ctrl-C and SIGTERM, sent to its whole process group as a terminal
or a service manager sends them, stop it every time, idle or under load.

Each of the 80 runs starts serve.py (two workers, signatures on) in a session of its own with TMPDIR set to a fresh
folder, signals the group, and checks: the server exits within STOP_SECONDS with exit code 0 (or the code that
conventionally reports the signal), nothing of its group is left, its temporary folder is empty, the call-log writer
was not restarted on the way out, and under load every event acknowledged with 204 is stored.
"""

import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from conftest import call_log_reader
from serve import WORKER_STOP_SECONDS
from support.production import Load, event_keys, group_members, start_server, stop_group, wait_until

RUNS_PER_SIGNAL = 20
STOP_SECONDS = 10
LOAD_THREADS = 4
ACKNOWLEDGED_BEFORE_SIGNAL = 20
PARALLEL_SERVERS = 2  # two servers start at once: the runs take half as long
GIVE_UP_AFTER_FAILED_RUNS = 3  # a broken shutdown makes every run wait STOP_SECONDS: enough to show it
# granian kills a worker still running WORKER_STOP_SECONDS after it was told to stop, and says so. It also says so at
# once, without killing anything, when its thread watching the worker reaped it an instant before the check.
KILL_WARNING = "after it refused to gracefully stop"


@dataclass
class Run:
    """One start and stop, and what was wrong with it."""

    name: str
    signal: signal.Signals
    code: int | None = None
    seconds: float = 0.0
    acknowledged: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_after_signal: str = ""


def accepted_codes(stop_signal: signal.Signals) -> set[int]:
    # 0 is what serve.py returns; a server that re-raised the signal or exited 128+N would be conventional too.
    return {0, -stop_signal, 128 + stop_signal}


def stop_and_check(server, stop_signal: signal.Signals, run: Run, load: Load | None) -> None:
    """Signal the server's process group, then check how it stopped; fills in `run`."""
    output_before = len(server.output())
    signalled = time.monotonic()
    os.killpg(server.process.pid, stop_signal)
    try:
        run.code = server.process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        run.problems.append(f"still running {STOP_SECONDS} s after {stop_signal.name}")
    run.seconds = time.monotonic() - signalled
    if load is not None:
        load.stop()
    if run.code is not None and run.code not in accepted_codes(stop_signal):
        run.problems.append(f"exit code {run.code}")
    deadline = signalled + STOP_SECONDS
    while group_members(server.process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # processes of the group get until the same deadline to be gone
    left = group_members(server.process.pid)
    if left:
        run.problems.append(f"left running: {[(member.pid, ' '.join(member.command)) for member in left]}")
    if os.listdir(server.tmpdir):
        run.problems.append(f"left in TMPDIR: {os.listdir(server.tmpdir)}")
    run.output_after_signal = server.output()[output_before:]
    if "restarting" in run.output_after_signal:
        run.problems.append("the call-log writer was restarted during shutdown")
    if KILL_WARNING in run.output_after_signal:
        if run.seconds >= WORKER_STOP_SECONDS:
            run.problems.append(f"a worker did not hear the signal and was killed after {WORKER_STOP_SECONDS} s")
        else:
            run.notes.append("granian warned of a kill that did not wait (its watcher thread reaped the worker)")
    if "Respawning worker" in run.output_after_signal:
        run.problems.append("granian respawned a worker during shutdown")


def check_acknowledged_stored(database_url: str, load: Load, run: Run) -> None:
    acknowledged = event_keys(load.payloads(204))
    run.acknowledged = len(acknowledged)
    with call_log_reader(database_url) as reader:
        stored = reader.stored_event_keys(acknowledged)
    if len(stored) != len(acknowledged):
        run.problems.append(f"{len(acknowledged) - len(stored)} of {len(acknowledged)} acknowledged events not stored")


def shutdown_run(folder: Path, stop_signal: signal.Signals, loaded: bool) -> Run:
    """Start the server, (under load: once events are being acknowledged) signal its group and check the stop."""
    run = Run(folder.name, stop_signal)
    database_url = f"sqlite:///{folder / 'calls.db'}"
    server = start_server(folder, database_url)
    load = None
    try:
        if loaded:
            load = Load(server.url, folder.name, connections=LOAD_THREADS).start()
            wait_until(lambda: load.count(204) >= ACKNOWLEDGED_BEFORE_SIGNAL, 30, "events acknowledged", server.process)
        stop_and_check(server, stop_signal, run, load)
        if load is not None:
            check_acknowledged_stored(database_url, load, run)
    finally:
        if load is not None:
            load.stop()
        stop_group(server.process)
        shutil.rmtree(server.tmpdir, ignore_errors=True)
    return run


def run_many(tmp_path: Path, loaded: bool) -> list[Run]:
    """RUNS_PER_SIGNAL runs for each of SIGINT and SIGTERM, PARALLEL_SERVERS at a time."""
    plan = [
        (tmp_path / f"{stop_signal.name.lower()}-{index}", stop_signal)
        for index in range(RUNS_PER_SIGNAL)
        for stop_signal in (signal.SIGINT, signal.SIGTERM)
    ]
    failed = 0
    lock = threading.Lock()

    def one(step: tuple[Path, signal.Signals]) -> Run | None:
        nonlocal failed
        with lock:
            if failed >= GIVE_UP_AFTER_FAILED_RUNS:
                return None
        run = shutdown_run(step[0], step[1], loaded)
        if run.problems:
            with lock:
                failed += 1
        return run

    with ThreadPoolExecutor(PARALLEL_SERVERS) as pool:
        return [run for run in pool.map(one, plan) if run is not None]


def summary(runs: list[Run], label: str) -> str:
    seconds = [run.seconds for run in runs]
    codes = Counter((run.signal.name, run.code) for run in runs)
    failed = [run for run in runs if run.problems]
    text = (
        f"{label}: {len(runs)} runs of {2 * RUNS_PER_SIGNAL}, exit codes {dict(codes)}, stopped in "
        f"{min(seconds):.2f}-{max(seconds):.2f} s (median {statistics.median(seconds):.2f}), "
        f"events acknowledged before and during the signal {sum(run.acknowledged for run in runs)}, "
        f"failed runs {len(failed)}, runs with notes {len([run for run in runs if run.notes])}"
    )
    for run in runs:
        if run.notes and not run.problems:
            text += f"\n  {run.name} (note): {'; '.join(run.notes)}"
    for run in failed:
        text += f"\n  {run.name}: {'; '.join(run.problems)}"
    if failed:
        text += f"\n  output of {failed[0].name} after the signal, without the events' blocks:\n"
        text += "\n".join(line for line in failed[0].output_after_signal.splitlines() if not event_line(line))
    return text


def event_line(line: str) -> bool:
    """A line of an event's pretty block (headline, payload, separator), which says nothing about the stop."""
    return "VOICE EVENT" in line or line.startswith(("{", "}", " ", "---"))


def test_idle_server_stops_cleanly_on_every_sigint_and_sigterm_to_its_group(tmp_path):
    runs = run_many(tmp_path, loaded=False)
    report = summary(runs, "idle")
    print(f"\n{report}")
    assert len(runs) == 2 * RUNS_PER_SIGNAL and not any(run.problems for run in runs), report


def test_server_under_load_stops_cleanly_and_keeps_every_acknowledged_event(tmp_path):
    runs = run_many(tmp_path, loaded=True)
    report = summary(runs, "under load")
    print(f"\n{report}")
    assert len(runs) == 2 * RUNS_PER_SIGNAL and not any(run.problems for run in runs), report
