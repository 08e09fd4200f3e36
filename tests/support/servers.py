"""Servers for the tests: free ports, the environment a test server runs in, and `make run`'s own server
(serve.py) started on a free port."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from config import HANDOVER_VARIABLE, METRICS_FOLDER_VARIABLE, VARIABLES
from conftest import ROOT, SCRATCH_INSTANCE

# The folder every process a test starts runs in. It has no .env, so a developer's own .env (in the project's
# folder, where serve.py and `flask` would read it) never reaches a test.
CHILD_FOLDER = Path(tempfile.mkdtemp(prefix="calls-test-cwd-"))
# `make run`'s command, for a server started from CHILD_FOLDER.
SERVE = [sys.executable, str(ROOT / "serve.py")]
# Every variable the server reads: one a developer exported in this shell reaches no server a test starts.
SETTINGS_VARIABLES = frozenset({*VARIABLES, HANDOVER_VARIABLE, METRICS_FOLDER_VARIABLE})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_env(**settings) -> dict:
    """The environment of a process a test starts: this one's without any of the server's settings, the project
    importable from CHILD_FOLDER, the scratch instance folder, then `settings`."""
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)
    env["INSTANCE_PATH"] = str(SCRATCH_INSTANCE)
    env.update(settings)
    return env


def fresh_interpreter(script: str, *args: str) -> dict:
    """`script` run by a new Python, where nothing a test imported is loaded yet, with only the project on its
    path; the JSON object its last line of output is."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def wait_until_listening(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not start listening")


class ServerURL(str):
    """A running server's base URL, which also knows the server's process id."""

    pid: int


@contextlib.contextmanager
def run_server(output: Path | None = None, cwd: Path = CHILD_FOLDER, unset: tuple[str, ...] = (), **settings):
    """The production server (serve.py, as `make run` starts it) on a free port, run in `cwd` without the variables
    `unset`; yields its base URL. What it prints goes to the file `output`, when given."""
    port = free_port()
    # Its own instance folder, so its own default database and token, unless the test names one.
    instance = tempfile.mkdtemp(prefix="calls-test-instance-")
    env = run_env(PORT=str(port), **{"WORKERS": "1", "INSTANCE_PATH": instance, **settings})
    for name in unset:
        env.pop(name, None)
    with open(output or os.devnull, "wb") as printed:
        process = subprocess.Popen(
            SERVE,
            cwd=cwd,
            env=env,
            stdout=printed,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(port, process)
        url = ServerURL(f"http://127.0.0.1:{port}")
        url.pid = process.pid
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(instance, ignore_errors=True)


def start_up_error(folder, **settings) -> str:
    """The one line `make run` prints when it refuses to start with these settings (TMPDIR in `folder`, which
    must be left empty: nothing was started)."""
    result = subprocess.run(
        SERVE,
        cwd=CHILD_FOLDER,
        env=run_env(TMPDIR=str(folder), **{"PORT": str(free_port()), **settings}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert list(folder.iterdir()) == []
    (line,) = result.stderr.splitlines()
    return line
