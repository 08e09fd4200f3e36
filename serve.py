"""Production server: check the settings, then serve the app under granian on HOST:PORT with WORKERS processes."""

from __future__ import annotations

from runtime.project_python import require_project_python  # isort: split

# Before any of the server's packages is imported: `python3 serve.py` without the .venv gets one line.
require_project_python()

import errno
import gc
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces
from granian.http import HTTP1Settings

from calllog.schema import Database, StorageError
from calllog.token_store import call_log_token, generated_token_file
from calllog.writer_process import wait_until_ready
from config import DATABASE_EXAMPLE, METRICS_FOLDER_VARIABLE, ConfigError, Settings, hand_over, load_settings
from runtime.stop_signals import mark_server_process, process_alive, relay_stop_signals, stop_when_parent_exits

# Requests a worker takes at once. A request waiting for its body or its commit is a coroutine, not a thread, so a
# few hundred slow clients cost little; with 16, 32 of them stopped the server from taking new ones.
BACKPRESSURE = 1024
# Vonage sends a webhook's headers at once; a client that takes longer is cut off (the body: edge.BODY_SECONDS).
HEADER_SECONDS = 5
# How long a worker may take to finish its requests once told to stop, and then the writer its batch.
WORKER_STOP_SECONDS = 5
WRITER_STOP_SECONDS = 5
# A writer that exits within WRITER_STEADY_SECONDS of starting is restarted after a delay that doubles each time
# (from WRITER_FIRST_DELAY up to WRITER_MAX_DELAY); after WRITER_GIVE_UP such exits in a row serve.py stops with
# one line, so a service manager restarts the whole server (or a person reads why) instead of a tight loop.
WRITER_STEADY_SECONDS = 10
WRITER_FIRST_DELAY = 0.5
WRITER_MAX_DELAY = 8.0
WRITER_GIVE_UP = 5
MAX_SOCKET_PATH = 100  # Linux allows 107 bytes for a Unix socket's path
# prometheus_client's multi-process mode: each worker and the writer keep their metrics in files of this folder.
# This process never imports prometheus_client (the workers are forked from it, and the library chooses its mode
# once, when first imported), so the variable is set before any of them does.


def startup_text(notes: list[str], log_format: str) -> str:
    """The start-up notes as printed: lines for a person, or with LOG_FORMAT=json one JSON object each, so that
    every line on standard output is one for a log shipper."""
    if log_format != "json":
        return "\n".join(notes)
    from runtime.logs import json_line

    return "\n".join(json_line("info", note.strip(), startup=True) for note in notes if note.strip())


def startup_notes(settings: Settings, token_file: Path | None = None) -> list[str]:
    """What a person starting the server should know: where it listens, where the call log's token comes from
    when the server made it (`token_file`), and what is still unset."""
    # Only the standard library; the workers import this module but never run this function.
    from vonage_helper.ngrok import tunnel_notes

    base = f"http://{settings.host}:{settings.port}"
    notes = [
        f"Vonage voice webhook server on {base} ({settings.workers} workers)",
        f"  answer URL   {base}/voice/answer   (GET)",
        f"  event URL    {base}/voice/event    (POST)",
        f"  fallback URL {base}/voice/fallback",
        *tunnel_notes(settings),
        f"  health       {base}/health",
        f"  call log     {base}/calls?token={settings.call_log_token}",
        f"  (API)        {base}/api/calls   (Authorization: Bearer <CALL_LOG_TOKEN>)",
        f"  metrics      {base}/metrics   (Prometheus: Authorization: Bearer <CALL_LOG_TOKEN>)",
    ]
    if token_file is not None:
        notes.append(f"  (token kept in {token_file}; set CALL_LOG_TOKEN to choose one)")
    if not settings.signature_secrets:
        notes.append(
            "WARNING: VONAGE_SIGNATURE_SECRET is not set, so webhooks are accepted without checking that they come "
            "from Vonage; anyone who finds this server's URL can post events or make it bridge calls. "
            "Set it to your account's signature secret (dashboard: API settings)."
        )
    if settings.vonage_number is None:
        notes.append(
            "note: VONAGE_NUMBER is not set, so calls use randomFromNumber "
            "(one of the application's numbers); set it to choose the caller ID"
        )
    return notes


def free_port(host: str, taken: int) -> int:
    """The first port after `taken` that can be listened on (or 0, "any free port", if none of the next 100)."""
    for port in range(taken + 1, min(taken + 101, 65536)):
        if _can_listen(host, port):
            return port
    return 0


def _can_listen(host: str, port: int) -> bool:
    try:
        _listen_probe(host, port)
    except OSError:
        return False
    return True


def _listen_probe(host: str, port: int) -> None:
    """Bind HOST:PORT as the server would, and let go; raises OSError if it cannot."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def database_problem(url: str) -> str | None:
    """Why the call log's database cannot be used, as one line naming DATABASE_URL, or None if it can."""
    database = Database(url)
    try:
        database.ensure_schema()
    except StorageError as error:
        return f"DATABASE_URL: {error}; for example {DATABASE_EXAMPLE}"
    finally:
        database.close()
    return None


def port_problem(host: str, port: int) -> str | None:
    """Why HOST:PORT cannot be listened on, as one line with the fix, or None if it can."""
    try:
        _listen_probe(host, port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return (
                f"PORT: {port} is already in use on {host}; stop the other server or set PORT={free_port(host, port)}"
            )
        return f"HOST: cannot listen on {host}:{port} ({error.strerror}); for example HOST=127.0.0.1"
    return None


class ChildProcess:
    """A process serve.py runs beside granian's workers (`python -m MODULE ARGS`), restarted if it ever exits while
    the server runs. It is told to stop by closing its standard input, after the workers have stopped.

    A child process rather than a thread of serve.py: granian forks its workers from this process, and a thread here
    (holding a lock, mid-import) would hang the worker forked at that moment.
    """

    name = "a child process"

    def __init__(self, module: str, *args: str):
        self.module, self.args = module, args
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.gave_up: str | None = None  # why the supervisor stopped restarting it

    def _spawn(self) -> subprocess.Popen:
        command = [sys.executable, "-m", self.module, *self.args]
        return subprocess.Popen(command, cwd=Path(__file__).parent, stdin=subprocess.PIPE)

    def _wait_until_ready(self) -> None:
        """Return once the new process does its work; raise RuntimeError if it never does."""

    def start(self) -> None:
        self.process = self._spawn()
        self._wait_until_ready()
        threading.Thread(target=self._supervise, name=f"{self.module}-supervisor", daemon=True).start()

    def _supervise(self) -> None:
        quick_exits = 0
        started = time.monotonic()
        while True:
            code = self.process.wait()
            if self.stopping.is_set():  # told to stop: its exit is the stop, not a crash
                return
            quick_exits = quick_exits + 1 if time.monotonic() - started < WRITER_STEADY_SECONDS else 1
            if quick_exits >= WRITER_GIVE_UP:
                self.gave_up = (
                    f"{self.name} exited {quick_exits} times in a row within {WRITER_STEADY_SECONDS} s of "
                    f"starting (last with {code}); its output above says why. Stopping the server"
                )
                print(f"error: {self.gave_up}", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)  # the usual stop: the workers finish what they hold
                return
            delay = min(WRITER_FIRST_DELAY * 2 ** (quick_exits - 1), WRITER_MAX_DELAY)
            print(f"{self.name} exited with {code}; restarting it in {delay:g} s", file=sys.stderr, flush=True)
            if self.stopping.wait(delay):
                return
            with self._lock:
                if self.stopping.is_set():
                    return
                self.process.stdin.close()
                self.process = self._spawn()
                started = time.monotonic()

    def stop(self) -> None:
        """Tell it to finish and wait for it (the writer commits the batch in hand first)."""
        with self._lock:
            self.stopping.set()
        if self.process is None:
            return
        self.process.stdin.close()
        try:
            self.process.wait(timeout=WRITER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop in time; killing it", file=sys.stderr, flush=True)
            self.process.kill()
            self.process.wait()


class WriterProcess(ChildProcess):
    """The call-log writer process (calllog/writer_process.py)."""

    name = "the call-log writer"

    def __init__(self, socket_path: str):
        super().__init__("calllog.writer_process", socket_path)
        self.socket_path = socket_path

    def _wait_until_ready(self) -> None:
        wait_until_ready(self.socket_path, self.process)


class JobsProcess(ChildProcess):
    """The background jobs (outbound/process.py): recordings fetched, and what else the settings call for."""

    name = "the background jobs"

    def __init__(self):
        super().__init__("outbound.process")


def main() -> int:
    try:
        settings = load_settings()
        token_file = generated_token_file(settings)
        # The same token across restarts (kept in the instance folder when CALL_LOG_TOKEN is unset), so an
        # open call-log page keeps working. The workers receive it with the rest of the settings (run).
        settings = replace(settings, call_log_token=call_log_token(settings))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    raise_descriptor_limit()
    remove_orphaned_folders()
    problem = port_problem(settings.host, settings.port) or database_problem(settings.database_url)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print(startup_text(startup_notes(settings, token_file), settings.log_format), flush=True)
    # Before any thread starts, so that every thread of this process inherits the blocked signals.
    relay_stop_signals()
    mark_server_process()
    try:
        gave_up = run(settings)
    except KeyboardInterrupt:  # stopped while still starting
        return 130
    return 1 if gave_up else 0


def raise_descriptor_limit() -> None:
    """Let this process and its workers open as many files as the system allows them (the soft limit up to the
    hard one): each connection is a descriptor, and the usual soft limit of 1024 is reached by 1,000 clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # the limit stays as it was: requests past it get 503 (edge._failure), the server goes on


# The folders a run keeps its writer's socket, its metrics and its settings in, named for the serve.py that made them.
_RUN_FOLDER = re.compile(r"voice-(?:writer|metrics|settings)-(\d+)-")


def remove_orphaned_folders() -> None:
    """Remove the run folders of a serve.py that is gone without cleaning up (killed with kill -9, say)."""
    for base in {tempfile.gettempdir(), "/tmp"}:
        try:
            entries = os.listdir(base)
        except OSError:
            continue
        for name in entries:
            match = _RUN_FOLDER.match(name)
            if match and not process_alive(int(match.group(1))):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def run(settings: Settings) -> str | None:
    """The writer process, then granian's workers until they are stopped; then the writer, last. Returns why
    the server stopped itself (a writer that kept exiting), or None."""
    # A fresh folder each run: a scrape adds up every file in it, so files of an earlier run must not count.
    run_prefix = f"{os.getpid()}-"
    metrics_folder = tempfile.mkdtemp(prefix=f"voice-metrics-{run_prefix}", dir=_short_temp_folder())
    os.environ[METRICS_FOLDER_VARIABLE] = metrics_folder
    socket_folder = tempfile.mkdtemp(prefix=f"voice-writer-{run_prefix}", dir=_short_temp_folder())
    writer = WriterProcess(os.path.join(socket_folder, "writer.sock"))
    # The writer, the background jobs and the workers run on these settings, with where the writer listens, rather
    # than reading the environment and a .env again from their own folders. A folder of its own: a child that
    # starts while the socket's folder is unusable still reads them, and then says what is wrong with the socket.
    settings_folder = tempfile.mkdtemp(prefix=f"voice-settings-{run_prefix}")
    hand_over(replace(settings, writer_socket=writer.socket_path), settings_folder)
    auto_webhooks = None
    jobs = JobsProcess()
    try:
        writer.start()
        jobs.start()
        if settings.auto_webhooks:
            from vonage_helper.auto import AutoWebhooks  # the SDK's REST client: this process only, when asked for

            auto_webhooks = AutoWebhooks(settings)
            auto_webhooks.start()
        serve(settings)
    finally:
        if auto_webhooks:
            auto_webhooks.stop()
        jobs.stop()
        writer.stop()
        shutil.rmtree(socket_folder, ignore_errors=True)
        shutil.rmtree(metrics_folder, ignore_errors=True)
        shutil.rmtree(settings_folder, ignore_errors=True)
    return writer.gave_up or jobs.gave_up


def _short_temp_folder() -> str | None:
    """The temp folder for the writer's socket: TMPDIR, unless its path is too long for a Unix socket's."""
    base = tempfile.gettempdir()
    longest = os.path.join(base, "voice-writer-4194304-xxxxxxxx", "writer.sock")
    return base if len(longest) < MAX_SOCKET_PATH else "/tmp"


def production_app():
    """The app as each granian worker builds it: the Flask app behind edge.Edge, the RSGI front.

    Its start-up objects (Flask, SQLAlchemy: a few hundred thousand) are moved out of the garbage collector's
    sight, so the collections that requests trigger do not walk them again and again.
    """
    from app import create_app
    from edge.rsgi import Edge

    relay_stop_signals(only_from_parent=True)
    # A worker outlives no serve.py, however it ended (kill -9 too): it would go on serving a port nobody stops.
    stop_when_parent_exits()
    application = create_app()
    # Other processes scrape this worker's counts: add them to its metrics' files every second.
    application.extensions["metrics"].start_flushing()
    front = Edge(application)
    gc.collect()
    gc.freeze()
    return front


def serve(settings: Settings) -> None:
    """Run granian with the app's workers until it is stopped."""
    log_config = None
    if settings.log_format == "json":
        # granian's own lines ("Started worker-1") as JSON objects too, formatted as the server's log is.
        log_config = {
            "formatters": {
                "generic": {"()": "runtime.logs.JsonFormatter"},
                "access": {"()": "runtime.logs.JsonFormatter"},
            }
        }
    server = Granian(
        "serve:production_app",
        log_dictconfig=log_config,
        factory=True,
        interface=Interfaces.RSGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        backpressure=BACKPRESSURE,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_SECONDS * 1000),
        websockets=False,
        respawn_failed_workers=True,
        workers_kill_timeout=WORKER_STOP_SECONDS,
    )
    server.serve()


if __name__ == "__main__":
    sys.exit(main())
