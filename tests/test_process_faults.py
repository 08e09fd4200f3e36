"""Faults of the production server's own processes (serve.py, its granian workers, its call-log writer), attacked
from outside on the real server, signatures on, SQLite in the test's folder:

- serve.py killed with kill -9 (the process, not its group): its workers and its writer must not outlive it, and a
  new serve.py on the same port must start, answer, and remove the temporary folders the killed one left behind;
- the writer hung (SIGSTOP): answers must not wait for it, events must be refused with 503 and Retry-After within
  the worker's wait, /health must say the writer is not ok, and after SIGCONT everything answered must be stored;
- the disk full under SQLite (a small tmpfs filled to the last byte): answers keep their NCCO, events are refused
  with 503 rather than acknowledged and lost, and once space is freed every answer and acknowledged event is stored;
- the writer killed (SIGKILL) under a flow of events and answers: serve.py restarts it, and every answer that got
  its NCCO is stored exactly once, every event acknowledged with 204 is stored;
- the server out of file descriptors (RLIMIT_NOFILE 200, 400 idle connections): no request gets a 500 or a
  traceback, only a 2xx or a 503 with Retry-After (or no connection), and events are acknowledged again afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from calllog.client import WAIT_SECONDS
from conftest import call_log_reader
from support.needs import unavailable
from support.production import (
    AnswerLoad,
    Load,
    Production,
    event_keys,
    event_payload,
    post_event,
    processes,
    server_env,
    short_tmpdir,
    signed_answer,
    signed_event,
    start_server,
    stop_group,
    stored_answer_conversations,
    wait_until,
)
from support.servers import CHILD_FOLDER, SERVE, free_port

ORPHANS_GONE_SECONDS = 20
ANSWERS_WHILE_HUNG = 20
ANSWER_SECONDS = 1
EVENT_REFUSED_SECONDS = WAIT_SECONDS + 2.5  # the worker's wait, plus its once-a-second watchdog and some slack
HEALTH_SECONDS = 2.5
RECOVERY_SECONDS = 30
DESCRIPTOR_LIMIT = 200
IDLE_CONNECTIONS = 400
REQUESTS_WHILE_EXHAUSTED = 20


@contextlib.contextmanager
def serving(folder: Path, database_url: str, keep_tmpdir: bool = False, **options):
    server = start_server(folder, database_url, **options)
    try:
        yield server
    finally:
        stop_group(server.process)
        if not keep_tmpdir:
            shutil.rmtree(server.tmpdir, ignore_errors=True)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'calls.db'}"


def tail(server: Production, characters: int = 4000) -> str:
    return f"\n--- server output (last {characters} characters) ---\n{server.output()[-characters:]}"


def traceback_in(output: str, characters: int = 6000) -> str:
    """The server's output from its first traceback on: what a failure has to show, wherever it came in a long run."""
    start = output.find("Traceback")
    return f"--- server output from its first traceback ---\n{output[max(0, start - 500) : start + characters]}"


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (a zombie runs nothing)."""
    return {process.pid for process in processes() if process.pid in pids and process.state != "Z"}


def run_folders(tmpdir: Path, pid: int) -> list[str]:
    """The folders a serve.py of process id `pid` keeps its writer's socket, its metrics and its settings in."""
    return sorted(
        os.path.basename(path)
        for kind in ("writer", "metrics", "settings")
        for path in glob.glob(os.path.join(tmpdir, f"voice-{kind}-{pid}-*"))
    )


def health(server: Production, timeout: float = 10) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = requests.get(f"{server.url}/health", timeout=timeout)
    return response.status_code, response.json(), time.monotonic() - started


def writer_ok(server: Production) -> bool:
    status, body, _ = health(server)
    return status == 200 and body["parts"]["writer"]["status"] == "ok" and body["status"] == "ok"


def event_acknowledged(server: Production, run: str, index: int) -> bool:
    with requests.Session() as session:
        return post_event(session, server.url, event_payload(run, index), timeout=15) == 204


def deliver_event(url: str, payload: dict, timeout: float) -> tuple[int | str, str | None, float]:
    """One signed event on a connection of its own: its status (or what went wrong), its Retry-After, its time."""
    body, headers = signed_event(payload)
    started = time.monotonic()
    try:
        response = requests.post(f"{url}/voice/event", data=body, headers=headers, timeout=timeout)
    except requests.RequestException as error:
        return type(error).__name__, None, time.monotonic() - started
    return response.status_code, response.headers.get("Retry-After"), time.monotonic() - started


def ask_answer(url: str, index: int, timeout: float) -> tuple[int | str, str | None, float, object]:
    """One signed answer on a connection of its own: status (or what went wrong), Retry-After, time, its JSON."""
    path, headers = signed_answer(index)
    started = time.monotonic()
    try:
        response = requests.get(f"{url}{path}", headers=headers, timeout=timeout)
    except requests.RequestException as error:
        return type(error).__name__, None, time.monotonic() - started, None
    try:
        body = response.json()
    except ValueError:
        body = response.text[:200]
    return response.status_code, response.headers.get("Retry-After"), time.monotonic() - started, body


def is_ncco(body) -> bool:
    return isinstance(body, list) and bool(body) and all(isinstance(step, dict) and "action" in step for step in body)


def wait_until_answers_stored_once(server: Production, count: int) -> set[str]:
    """Wait until the answers ask_answer gave for indexes 0..count-1 are all stored, then check none is stored
    twice; return their conversations."""
    wanted = {f"CON-a-{index}" for index in range(count)}

    def recorded() -> Counter:
        found = stored_answer_conversations(server.database_url, "CON-a-")
        return Counter({conversation: count for conversation, count in found.items() if conversation in wanted})

    try:
        wait_until(lambda: set(recorded()) == wanted, RECOVERY_SECONDS, "every answer stored", server.process)
    except AssertionError as error:
        raise AssertionError(f"{error}: missing {sorted(wanted - set(recorded()))}{tail(server)}") from None
    twice = {conversation: count for conversation, count in recorded().items() if count != 1}
    assert not twice, f"answers stored more than once: {twice}"
    return wanted


def test_serve_killed_with_sigkill_leaves_no_worker_or_writer_and_a_new_server_takes_its_port_and_folders(tmp_path):
    database_url = sqlite_url(tmp_path)
    tmpdir = short_tmpdir()
    try:
        first = start_server(tmp_path / "first", database_url, tmpdir=tmpdir)
        try:
            roles = first.roles()
            children = set(roles["writer"] + roles["worker"])
            assert len(roles["writer"]) == 1 and len(roles["worker"]) == 2, f"children: {roles}{tail(first)}"
            left_folders = run_folders(tmpdir, first.process.pid)
            assert len(left_folders) == 3, f"the first run's folders in {tmpdir}: {os.listdir(tmpdir)}"
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=10)
            try:
                took = wait_until(
                    lambda: not alive(children), ORPHANS_GONE_SECONDS, "the killed server's children gone"
                )
            except AssertionError as error:
                left = [(p.pid, " ".join(p.command)) for p in processes() if p.pid in alive(children)]
                raise AssertionError(f"{error}; still running: {left}{tail(first)}") from None
        finally:
            stop_group(first.process)
        print(f"\nthe killed server's {len(children)} children were gone after {took:.1f} s")
        with serving(tmp_path / "second", database_url, keep_tmpdir=True, port=first.port, tmpdir=tmpdir) as second:
            status, body, _ = health(second)
            assert status == 200 and body["status"] == "ok", f"/health of the second server: {status} {body}"
            assert event_acknowledged(second, "second", 0), f"an event to the second server{tail(second)}"
            still = run_folders(tmpdir, first.process.pid)
            assert not still, (
                f"the killed server's folders {still} are still in {tmpdir} after a new server started "
                f"(it left {left_folders}); the folder holds {os.listdir(tmpdir)}"
            )
            assert len(run_folders(tmpdir, second.process.pid)) == 3, f"{tmpdir} holds {os.listdir(tmpdir)}"
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.mark.parametrize("moment", ["writer-started", "workers-loading"])
def test_serve_killed_with_sigkill_while_it_starts_leaves_nothing_running(tmp_path, moment):
    """Killed before its workers serve: a worker that asks who its parent is only once it has loaded would be
    asking after serve.py died, so each is told serve.py's process id when it is started."""
    tmpdir = short_tmpdir()
    port = free_port()
    output_path = tmp_path / "server.log"
    try:
        with open(output_path, "wb") as output:
            process = subprocess.Popen(
                SERVE,
                cwd=CHILD_FOLDER,
                env=server_env(port, tmpdir, sqlite_url(tmp_path), 2, {}),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Production(process, port, output_path, sqlite_url(tmp_path), 2, tmpdir)
        try:
            wanted = "writer" if moment == "writer-started" else "worker"
            wait_until(lambda: server.roles()[wanted], 60, f"serve.py started no {wanted}", process)
            assert server.started_workers() == 0, f"the workers already serve: too late to test{tail(server)}"
            roles = server.roles()
            children = set(roles["writer"] + roles["worker"])
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            try:
                took = wait_until(lambda: not alive(children), ORPHANS_GONE_SECONDS, "the children gone")
            except AssertionError as error:
                left = [(p.pid, " ".join(p.command)) for p in processes() if p.pid in alive(children)]
                raise AssertionError(f"{error}; still running: {left}{tail(server)}") from None
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                raise AssertionError(f"port {port} still answers after serve.py and its children are gone")
        finally:
            stop_group(process)
        print(f"\nkilled with its {roles}: all gone after {took:.1f} s")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(params=["writer", "postgresql"])
def hung(request, tmp_path):
    """What the test hangs with SIGSTOP: the call-log writer (SQLite), or every process of a PostgreSQL server."""
    if request.param == "writer":
        yield request.param, sqlite_url(tmp_path), lambda server: server.roles()["writer"]
    else:
        postgres = request.getfixturevalue("own_postgres")
        yield request.param, postgres.url, lambda server: postgres.processes()


def test_hung_storage_delays_no_answer_refuses_events_with_503_and_stores_every_answer_once_it_resumes(tmp_path, hung):
    part, database_url, stopped_by = hung
    with serving(tmp_path / "server", database_url) as server:
        assert event_acknowledged(server, "before", 0), f"an event before the {part} hung{tail(server)}"
        wait_until(lambda: writer_ok(server), 10, f"/health ok before the {part} hung", server.process)
        stopped = stopped_by(server)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            answers = [ask_answer(server.url, index, ANSWER_SECONDS) for index in range(ANSWERS_WHILE_HUNG)]
            with ThreadPoolExecutor(4) as pool:
                events = list(
                    pool.map(lambda index: deliver_event(server.url, event_payload("hung", index), 15), range(4))
                )
            try:
                status, body, seconds = health(server)
            except requests.RequestException as error:
                status, body, seconds = type(error).__name__, {}, float("nan")
            stopped_state = next(p.state for p in processes() if p.pid == stopped[0])
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        figures = (
            f"answers (status, seconds): {[(a[0], round(a[2], 2)) for a in answers]}; "
            f"events (status, Retry-After, seconds): {[(e[0], e[1], round(e[2], 2)) for e in events]}; "
            f"/health in {seconds:.2f} s: {status} {json.dumps(body)}; {part} state while stopped {stopped_state}"
        )
        print(f"\n{figures}")
        assert stopped_state == "T", f"the {part} was not stopped; {figures}"
        slow = [(index, got) for index, got in enumerate(answers) if got[0] != 200 or not is_ncco(got[3])]
        assert not slow, f"{len(slow)} of {ANSWERS_WHILE_HUNG} answers without an NCCO within 1 s: {slow}; {figures}"
        refused = [got for got in events if got[0] == 503 and got[1] and got[2] <= EVENT_REFUSED_SECONDS]
        assert len(refused) == len(events), f"events not refused with 503 and Retry-After in time; {figures}"
        assert status == 200 and seconds <= HEALTH_SECONDS, f"/health slow or failing; {figures}"
        assert body["parts"]["writer"]["status"] != "ok" and body["status"] == "degraded", f"/health; {figures}"

        wait_until(
            lambda: event_acknowledged(server, "after", 0), RECOVERY_SECONDS, "a 204 after SIGCONT", server.process
        )
        wait_until(lambda: writer_ok(server), RECOVERY_SECONDS, "/health ok after SIGCONT", server.process)
        wait_until_answers_stored_once(server, ANSWERS_WHILE_HUNG)


DISK_BYTES = 8 * 1024 * 1024
ANSWERS_WHILE_FULL = 40
EVENTS_WHILE_FULL = 40


@pytest.fixture
def small_disk():
    """A folder on a tmpfs of DISK_BYTES of its own, unmounted afterwards (mounting needs root, as in CI)."""
    folder = Path(tempfile.mkdtemp(prefix="voice-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        folder.rmdir()
        unavailable(f"the disk-full test mounts a tmpfs and needs root: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def fill(folder: Path) -> Path:
    """Write a ballast file until the disk refuses another byte; return it."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as out:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return ballast


def test_full_disk_loses_no_answer_and_no_acknowledged_event(tmp_path, small_disk):
    with serving(tmp_path / "server", f"sqlite:///{small_disk / 'calls.db'}") as server:
        assert event_acknowledged(server, "before", 0), f"an event before the disk filled{tail(server)}"
        ballast = fill(small_disk)
        try:
            answers = [ask_answer(server.url, index, ANSWER_SECONDS) for index in range(ANSWERS_WHILE_FULL)]
            payloads = [event_payload("full", index) for index in range(EVENTS_WHILE_FULL)]
            with ThreadPoolExecutor(4) as pool:
                events = list(pool.map(lambda payload: deliver_event(server.url, payload, 15), payloads))
        finally:
            ballast.unlink()
        figures = (
            f"answers: {Counter(a[0] for a in answers)}, slowest {max(a[2] for a in answers):.2f} s; "
            f"events: {Counter((e[0], e[1]) for e in events)}"
        )
        print(f"\nwith the disk full: {figures}")
        slow = [(index, got) for index, got in enumerate(answers) if got[0] != 200 or not is_ncco(got[3])]
        assert not slow, f"{len(slow)} of {ANSWERS_WHILE_FULL} answers without an NCCO within 1 s: {slow}"
        assert {e[0] for e in events} <= {204, 503}, f"events got something else than 204 or 503; {figures}"
        assert any(e[0] == 503 and e[1] for e in events), f"the full disk refused no event: not a test; {figures}"

        wait_until(
            lambda: event_acknowledged(server, "after", 0), RECOVERY_SECONDS, "a 204 once space is free", server.process
        )
        acknowledged = [key for key, got in zip(event_keys(payloads), events, strict=True) if got[0] == 204]
        with call_log_reader(server.database_url) as reader:
            stored = reader.stored_event_keys(acknowledged)
        assert stored == set(acknowledged), f"{len(set(acknowledged) - stored)} acknowledged events lost"
        wanted = wait_until_answers_stored_once(server, ANSWERS_WHILE_FULL)
        print(f"after: {len(acknowledged)} acknowledged events and {len(wanted)} answers stored, each once")


def test_killed_writer_is_restarted_and_every_given_answer_and_acknowledged_event_is_stored_once(tmp_path):
    with serving(tmp_path / "server", sqlite_url(tmp_path)) as server:
        load = Load(server.url, "killed", connections=8).start()
        answers = AnswerLoad(server.url, "killed").start()
        try:
            wait_until(
                lambda: load.count(204) >= 100 and len(answers.answered) >= 20,
                RECOVERY_SECONDS,
                "events and answers flowing",
                server.process,
            )
            (writer,) = server.roles()["writer"]
            answered_before = len(answers.answered)
            load.phase = "writer killed"
            os.kill(writer, signal.SIGKILL)
            wait_until(lambda: server.roles()["writer"] not in ([], [writer]), 15, "a new writer", server.process)
            wait_until(
                lambda: (
                    sum(1 for got, at in load.snapshot().values() if at == "writer killed" and got == 204) >= 200
                    and len(answers.answered) >= answered_before + 20
                ),
                RECOVERY_SECONDS,
                "events and answers flowing after the kill",
                server.process,
            )
        finally:
            answers.stop()
            load.stop()
        prefix = f"CON-a-{answers.run}-"

        def all_answers_stored() -> bool:
            return set(answers.answered) <= set(stored_answer_conversations(server.database_url, prefix))

        with contextlib.suppress(AssertionError):  # the assertions below say what is missing
            wait_until(all_answers_stored, RECOVERY_SECONDS, "every answer stored", server.process)
        recorded = stored_answer_conversations(server.database_url, prefix)
        acknowledged = set(event_keys(load.payloads(204)))
        with call_log_reader(server.database_url) as reader:
            stored = reader.stored_event_keys(sorted(acknowledged))
        output = server.output()
    tally = load.tally()
    lost_answers = set(answers.answered) - set(recorded)
    twice = sorted(conversation for conversation, count in recorded.items() if count > 1)
    unasked = set(recorded) - set(answers.answered)
    figures = (
        f"answers sent {len(answers.answered) + sum(answers.other.values())}, 200 {len(answers.answered)} "
        f"(other {dict(answers.other)}), stored {len(recorded)}, lost {len(lost_answers)}, stored twice {len(twice)}; "
        f"events sent {len(load.snapshot())}, 204 {len(acknowledged)}, stored {len(stored & acknowledged)}, "
        f"lost {len(acknowledged - stored)}, outcomes {dict(tally)}"
    )
    print(f"\n{figures}")
    assert "the call-log writer exited with -9; restarting it" in output, f"no restart reported; {figures}"
    assert not lost_answers and not twice, f"answers lost {sorted(lost_answers)[:5]} or twice {twice[:5]}; {figures}"
    assert not unasked, f"answers stored that got no 200: {sorted(unasked)[:5]}; {figures}"
    assert acknowledged <= stored, f"acknowledged events not stored; {figures}"
    assert set(tally) <= {204, 503}, f"events answered other than 204 or 503; {figures}"


def limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))


def open_idle_connections(port: int, count: int) -> tuple[list[socket.socket], Counter]:
    """`count` TCP connections that send nothing (those that cannot connect are counted by why)."""
    opened, failed = [], Counter()
    for _ in range(count):
        connection = socket.socket()
        connection.settimeout(0.5)
        try:
            connection.connect(("127.0.0.1", port))
        except OSError as error:
            failed[type(error).__name__] += 1
            connection.close()
            continue
        opened.append(connection)
    return opened, failed


def test_server_out_of_descriptors_answers_2xx_or_503_never_500_and_acknowledges_events_again(tmp_path):
    with serving(tmp_path / "server", sqlite_url(tmp_path), preexec_fn=limit_descriptors) as server:
        workers = server.roles()["worker"]
        limits = Path(f"/proc/{workers[0]}/limits").read_text()
        assert any(
            line.startswith("Max open files") and line.split()[3:5] == [str(DESCRIPTOR_LIMIT)] * 2
            for line in limits.splitlines()
        ), f"a worker's limits: {limits}"
        assert event_acknowledged(server, "before", 0), f"an event before the descriptors ran out{tail(server)}"
        idle, not_connected, descriptors = [], Counter(), []
        try:
            # A quarter of the idle connections first, then the rest in steps with an event and an answer after each:
            # the first requests meet a worker with descriptors to spare, the later ones a worker at its limit (it
            # then cannot connect to the writer, say, or take the connection at all).
            idle, not_connected = open_idle_connections(server.port, IDLE_CONNECTIONS // 4)
            step = (IDLE_CONNECTIONS - len(idle) - sum(not_connected.values())) // REQUESTS_WHILE_EXHAUSTED
            with ThreadPoolExecutor(2 * REQUESTS_WHILE_EXHAUSTED) as pool:
                events, answers = [], []
                for index in range(REQUESTS_WHILE_EXHAUSTED):
                    opened, failed = open_idle_connections(server.port, step)
                    idle += opened
                    not_connected += failed
                    events.append(pool.submit(deliver_event, server.url, event_payload("exhausted", index), 4))
                    answers.append(pool.submit(ask_answer, server.url, index, 4))
                descriptors = [len(os.listdir(f"/proc/{pid}/fd")) for pid in workers]
                outcomes = [("event", *future.result()[:3]) for future in events]
                answered = [(index, future.result()) for index, future in enumerate(answers)]
                outcomes += [("answer", *got[:3]) for _, got in answered]
        finally:
            for connection in idle:
                connection.close()
        wait_until(
            lambda: event_acknowledged(server, "afterwards", 0), RECOVERY_SECONDS, "a 204 afterwards", server.process
        )
        given = {f"CON-a-{index}" for index, got in answered if got[0] == 200}
        with contextlib.suppress(AssertionError):  # the assertion below says what is missing
            wait_until(
                lambda: given <= set(stored_answer_conversations(server.database_url, "CON-a-")),
                RECOVERY_SECONDS,
                "the answers given stored",
                server.process,
            )
        recorded = stored_answer_conversations(server.database_url, "CON-a-")
        output = server.output()
    tally = Counter((kind, got) for kind, got, _, _ in outcomes)
    figures = (
        f"idle connections open {len(idle)}, not connected {dict(not_connected)}; descriptors of the workers at "
        f"the end {descriptors} (limit {DESCRIPTOR_LIMIT}); outcomes {dict(tally)}; answers given {len(given)}, "
        f"stored {len(given & set(recorded))}; lines of the server's output on running out of descriptors "
        f"{output.count('Too many open files')}"
    )
    print(f"\n{figures}")
    failures = [(kind, got, retry) for kind, got, retry, _ in outcomes if isinstance(got, int) and got >= 500]
    assert not [got for got in failures if got[1] == 500], f"500s: {failures}; {figures}{tail(server)}"
    assert all(got == 503 and retry for _, got, retry in failures), f"5xx other than 503 with Retry-After; {figures}"
    odd = [(kind, got) for kind, got, _, _ in outcomes if isinstance(got, int) and not (200 <= got < 300 or got == 503)]
    assert not odd, f"answers neither 2xx nor 503: {odd}; {figures}"
    assert "Traceback" not in output, f"a traceback in the server's output; {figures}\n{traceback_in(output)}"
    assert given <= set(recorded), f"answers given but not stored: {sorted(given - set(recorded))}; {figures}"


def test_a_writer_that_keeps_exiting_is_restarted_with_growing_delays_then_the_server_stops_with_one_line(tmp_path):
    server = start_server(tmp_path / "server", sqlite_url(tmp_path))
    try:
        assert event_acknowledged(server, "before", 0), f"an event before the writer broke{tail(server)}"
        (writer,) = server.roles()["writer"]
        # Every new writer now exits at start: where its socket goes is a file, not a folder.
        (socket_folder,) = glob.glob(os.path.join(server.tmpdir, f"voice-writer-{server.process.pid}-*"))
        shutil.rmtree(socket_folder)
        Path(socket_folder).write_text("not a folder")
        started = time.monotonic()
        os.kill(writer, signal.SIGKILL)
        code = server.process.wait(timeout=60)
        took = time.monotonic() - started
    finally:
        stop_group(server.process)
    output = server.output()
    delays = [float(seconds) for seconds in re.findall(r"restarting it in ([\d.]+) s", output)]
    print(f"\nrestart delays {delays}; serve.py exited with {code} after {took:.1f} s")
    assert delays == [0.5, 1.0, 2.0, 4.0], f"restart delays {delays}{tail(server)}"
    (line,) = [line for line in output.splitlines() if line.startswith("error: the call-log writer exited")]
    assert "5 times in a row within 10 s of starting" in line and line.endswith("Stopping the server"), line
    assert code == 1 and took >= sum(delays), f"exit {code} after {took:.1f} s{tail(server)}"
