"""The production server (serve.py, as `make run` starts it) for the suites that attack it from outside.

It runs in a session of its own (so a signal reaches its whole process group), with its output captured in a file,
its temporary files in a folder of the test, signatures on; its processes are found by role from /proc; and
requests are signed as Vonage signs them (signatures.sign_webhook).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import requests

from edge.signatures import sign_webhook
from events import event_key
from support.servers import CHILD_FOLDER, SERVE, free_port, run_env, wait_until_listening

SECRET = "production-suites-signature-secret-0123456789"
CALL_LOG_TOKEN = "production-suites-call-log-token"
CALLEE = "447700900000"
STATUSES = ("started", "ringing", "answered", "completed")
CONNECTION_ERROR = "connection error"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    parent: int
    group: int
    state: str
    command: list[str]


def processes() -> list[ProcessInfo]:
    """Every process on the machine, from /proc (those that exit while being read are left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        arguments = [part.decode(errors="replace") for part in command if part]
        found.append(ProcessInfo(int(entry), int(fields[1]), int(fields[2]), fields[0], arguments))
    return found


def group_members(group: int) -> list[ProcessInfo]:
    """The processes of a process group that still exist and are not zombies (a zombie runs nothing)."""
    return [process for process in processes() if process.group == group and process.state != "Z"]


@dataclass
class Production:
    """A running serve.py: its process, where it listens, and its output so far."""

    process: subprocess.Popen
    port: int
    output_path: Path
    database_url: str
    workers: int
    tmpdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def roles(self) -> dict[str, list[int]]:
        """The server's children by role: the call-log writer, the background jobs and granian's workers."""
        found: dict[str, list[int]] = {"writer": [], "jobs": [], "worker": []}
        for child in processes():
            if child.parent == self.process.pid and child.state != "Z":
                if "calllog.writer_process" in child.command:
                    role = "writer"
                elif "outbound.process" in child.command:
                    role = "jobs"
                else:
                    role = "worker"
                found[role].append(child.pid)
        return found

    def started_workers(self) -> int:
        """Workers that have built the app and serve: granian says "Started worker-N" once each (and "Started
        worker-N runtime-M" for each of its runtimes, which are not counted)."""
        # As granian writes it, or as one JSON object with LOG_FORMAT=json.
        pattern = r'^(?:\[INFO\] Started worker-(\d+)|\{.*"message": "Started worker-(\d+)".*\})$'
        found = re.findall(pattern, self.output(), re.MULTILINE)
        return len({plain or json_form for plain, json_form in found})


def server_env(port: int, tmpdir: Path, database_url: str, workers: int, settings: dict) -> dict:
    defaults = {"VONAGE_SIGNATURE_SECRET": SECRET, "CALL_LOG_TOKEN": CALL_LOG_TOKEN}
    env = run_env(
        PORT=str(port),
        WORKERS=str(workers),
        DATABASE_URL=database_url,
        TMPDIR=str(tmpdir),
        **{**defaults, **settings},  # a suite may set either, or turn signatures off with ""
    )
    return env


def short_tmpdir() -> Path:
    """A fresh, empty folder for the server's TMPDIR, with a short path: the writer's Unix socket lives in it, and
    a socket's path may not be longer than 107 bytes (pytest's tmp_path is too long for that)."""
    return Path(tempfile.mkdtemp(prefix="vt-", dir="/tmp" if os.path.isdir("/tmp") else None))


_launches = itertools.count()


def start_server(
    folder: Path,
    database_url: str,
    workers: int = 2,
    *,
    port: int | None = None,
    tmpdir: Path | None = None,
    preexec_fn=None,
    **settings,
) -> Production:
    """Start serve.py and wait until every worker has started; its output goes to a file in `folder`. On a free
    port and in a fresh TMPDIR unless the test names them (a restart on the same port, say); `preexec_fn` runs in
    the child before serve.py (server_env cannot take PORT in its settings: it passes its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    own_tmpdir = tmpdir is None
    tmpdir = tmpdir or short_tmpdir()
    port = port or free_port()
    output_path = folder / f"server-{port}-{next(_launches)}.log"
    with open(output_path, "wb") as output:
        process = subprocess.Popen(
            SERVE,
            cwd=CHILD_FOLDER,
            env=server_env(port, tmpdir, database_url, workers, settings),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    server = Production(process, port, output_path, database_url, workers, tmpdir)
    try:
        wait_until_listening(port, process)
        wait_until(lambda: server.started_workers() >= workers, 60, "the workers did not start", process)
    except BaseException as error:
        stop_group(process)
        if own_tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise AssertionError(f"the server did not start ({error}); its output:\n{server.output()[-3000:]}") from None
    return server


def wait_until(condition, seconds: float, what: str, process: subprocess.Popen | None = None) -> float:
    """Poll `condition` until it holds; return how long that took, or fail saying `what` did not happen."""
    started = time.monotonic()
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the server exited with {process.returncode}")
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{what} within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - started


def stop_group(process: subprocess.Popen) -> None:
    """Make sure nothing of a server's process group is left: SIGTERM, then SIGKILL for what remains."""
    for stop_signal, seconds in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if not group_members(process.pid) and process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=seconds)
    process.wait()


@contextlib.contextmanager
def running_server(folder: Path, database_url: str, workers: int = 2, **settings):
    server = start_server(folder, database_url, workers, **settings)
    try:
        yield server
    finally:
        stop_group(server.process)
        shutil.rmtree(server.tmpdir, ignore_errors=True)


# Signed requests, every one distinct.


def event_payload(run: str, index: int) -> dict:
    """Event `index` of a run: four statuses per leg, two legs per conversation, each with its own identity."""
    return {
        "from": "Alice",
        "to": CALLEE,
        "uuid": f"leg-{run}-{index // 4}",
        "conversation_uuid": f"CON-{run}-{index // 8}",
        "status": STATUSES[index % 4],
        "direction": "outbound",
        "timestamp": f"2026-11-24T10:00:{index % 4:02d}.000Z",
    }


def signed_event(payload: dict) -> tuple[bytes, dict]:
    """A POST /voice/event body and its headers, signed now."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    authorization = sign_webhook(SECRET, "POST", body, [], time.time())
    return body, {"Content-Type": "application/json", "Authorization": authorization}


def signed_answer(index: int) -> tuple[str, dict]:
    """A GET /voice/answer path and its headers, signed now, for a call to CALLEE."""
    pairs = [("to", CALLEE), ("from_user", "Alice"), ("uuid", f"in-{index}"), ("conversation_uuid", f"CON-a-{index}")]
    authorization = sign_webhook(SECRET, "GET", b"", pairs, time.time())
    return f"/voice/answer?{urlencode(pairs)}", {"Authorization": authorization}


def post_event(session: requests.Session, url: str, payload: dict, timeout: float = 30) -> int | str:
    """Deliver one signed event: its status, or CONNECTION_ERROR, or the name of what else went wrong."""
    body, headers = signed_event(payload)
    try:
        return session.post(f"{url}/voice/event", data=body, headers=headers, timeout=timeout).status_code
    except requests.ConnectionError as error:
        if isinstance(error, requests.ConnectTimeout):
            return "connect timeout"
        return CONNECTION_ERROR
    except requests.RequestException as error:
        return type(error).__name__


@dataclass
class Load:
    """Threads, each with its own connection, posting distinct signed events until stopped (or `limit` sent).

    Every outcome is kept with the phase the test was in when it arrived.
    """

    url: str
    run: str
    connections: int = 16
    limit: int | None = None
    phase: str = "before the faults"
    outcomes: dict[int, tuple[int | str, str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _next: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for number in range(self.connections):
            thread = threading.Thread(target=self._deliver, name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _deliver(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                with self._lock:
                    index = next(self._next)
                if self.limit is not None and index >= self.limit:
                    return
                outcome = post_event(session, self.url, event_payload(self.run, index))
                with self._lock:
                    self.outcomes[index] = (outcome, self.phase)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread is still waiting"

    def snapshot(self) -> dict[int, tuple[int | str, str]]:
        with self._lock:
            return dict(self.outcomes)

    def count(self, outcome: int | str) -> int:
        return sum(1 for got, _ in self.snapshot().values() if got == outcome)

    def payloads(self, outcome: int | str | None = None) -> list[dict]:
        """The payloads sent (with `outcome`, only those that got it)."""
        chosen = self.snapshot().items()
        return [event_payload(self.run, index) for index, (got, _) in chosen if outcome in (None, got)]

    def tally(self) -> Counter:
        return Counter(got for got, _ in self.snapshot().values())


@dataclass
class AnswerLoad:
    """One thread asking for signed answers, each for a call of its own (conversation CON-a-<run>-<index>), until
    stopped; `paused` holds it between two requests. `answered` lists the conversations answered 200."""

    url: str
    run: str
    answered: list[str] = field(default_factory=list)
    other: Counter = field(default_factory=Counter)
    paused: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> AnswerLoad:
        self._thread = threading.Thread(target=self._ask, name="answer-load", daemon=True)
        self._thread.start()
        return self

    def _ask(self) -> None:
        with requests.Session() as session:
            for index in itertools.count():
                while self.paused.is_set() and not self._stop.is_set():
                    self._idle.set()
                    time.sleep(0.01)
                self._idle.clear()
                if self._stop.is_set():
                    return
                conversation = f"CON-a-{self.run}-{index}"
                pairs = [
                    ("to", CALLEE),
                    ("from_user", "Alice"),
                    ("uuid", f"in-{index}"),
                    ("conversation_uuid", conversation),
                ]
                headers = {"Authorization": sign_webhook(SECRET, "GET", b"", pairs, time.time())}
                try:
                    response = session.get(f"{self.url}/voice/answer?{urlencode(pairs)}", headers=headers, timeout=10)
                except requests.RequestException as error:
                    self.other[type(error).__name__] += 1
                    continue
                if response.status_code == 200:
                    self.answered.append(conversation)
                else:
                    self.other[response.status_code] += 1

    def pause(self) -> None:
        """Hold the requests, and return once none is in flight."""
        self.paused.set()
        wait_until(self._idle.is_set, 20, "the answer load pausing")

    def resume(self) -> None:
        self.paused.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the answer load is still waiting"


def stored_answer_conversations(database_url: str, prefix: str) -> Counter:
    """How many answer decisions the call log holds for each conversation whose id starts with `prefix`."""
    from calllog.schema import Database

    database = Database(database_url)
    try:
        with database.engine.connect() as connection:
            marker = "?" if database.engine.dialect.paramstyle == "qmark" else "%s"
            rows = connection.exec_driver_sql(
                f"SELECT conversation_uuid FROM answers WHERE conversation_uuid LIKE {marker}", (prefix + "%",)
            ).all()
    finally:
        database.close()
    return Counter(conversation for (conversation,) in rows)


def event_keys(payloads: list[dict]) -> list[str]:
    return [event_key(payload) for payload in payloads]
