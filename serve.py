"""Production server: check the settings, then serve the app under granian on HOST:PORT with WORKERS processes."""

from __future__ import annotations

import errno
import gc
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces

from calllog.writer import wait_until_ready
from config import ConfigError, Settings, load_settings

BLOCKING_THREADS = 16


def startup_notes(settings: Settings) -> list[str]:
    """What a person starting the server should know: where it listens and what is still unset."""
    base = f"http://{settings.host}:{settings.port}"
    notes = [
        f"Vonage voice webhook server on {base} ({settings.workers} workers)",
        f"  answer URL   {base}/voice/answer   (GET)",
        f"  event URL    {base}/voice/event    (POST)",
        f"  fallback URL {base}/voice/fallback",
        f"  health       {base}/health",
        f"  call log     {base}/calls?token={settings.call_log_token}",
        f"  (API)        {base}/api/calls?token={settings.call_log_token}",
    ]
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


def port_problem(host: str, port: int) -> str | None:
    """Why HOST:PORT cannot be listened on, as one line with the fix, or None if it can."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return f"PORT: {port} is already in use on {host}; stop the other server or set PORT=3001"
        return f"HOST: cannot listen on {host}:{port} ({error.strerror}); for example HOST=127.0.0.1"
    return None


class WriterProcess:
    """The call-log writer process (calllog/writer.py), restarted if it ever exits while the server runs."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "calllog.writer", self.socket_path], cwd=Path(__file__).parent)

    def start(self) -> None:
        self.process = self._spawn()
        wait_until_ready(self.socket_path, self.process)
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            code = self.process.wait()
            if self.stopping.is_set():
                return
            print(f"the call-log writer exited with {code}; restarting it", file=sys.stderr, flush=True)
            self.process = self._spawn()

    def stop(self) -> None:
        self.stopping.set()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if settings.call_log_token is None:
        # Like Jupyter: a fresh token each start. The workers read it from the environment they inherit.
        settings = replace(settings, call_log_token=secrets.token_urlsafe(18))
        os.environ["CALL_LOG_TOKEN"] = settings.call_log_token
    problem = port_problem(settings.host, settings.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print("\n".join(startup_notes(settings)), flush=True)
    socket_folder = tempfile.mkdtemp(prefix="voice-writer-")
    writer = WriterProcess(os.path.join(socket_folder, "writer.sock"))
    # The workers read where the writer listens from the environment they inherit.
    os.environ["CALL_LOG_WRITER_SOCKET"] = writer.socket_path
    writer.start()
    try:
        serve(settings)
    finally:
        writer.stop()
        shutil.rmtree(socket_folder, ignore_errors=True)
    return 0


def production_app():
    """The app as each granian worker builds it.

    Its start-up objects (Flask, SQLAlchemy, the SDK's models: a few hundred thousand) are moved out of the
    garbage collector's sight, so the collections that requests trigger do not walk them again and again.
    """
    from app import create_app

    application = create_app()
    gc.collect()
    gc.freeze()
    return application


def serve(settings: Settings) -> None:
    """Run granian with the app's workers until it is stopped."""
    Granian(
        "serve:production_app",
        factory=True,
        interface=Interfaces.WSGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        # Enough threads per worker for concurrent events to share a commit; more only fight over the GIL.
        blocking_threads=BLOCKING_THREADS,
        backpressure=BLOCKING_THREADS,
        websockets=False,
        respawn_failed_workers=True,
    ).serve()


if __name__ == "__main__":
    sys.exit(main())
