"""The user's app for the forwarding tests: support/receiver.py started in a process of its own, and what it got."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import ROOT
from support.servers import free_port, run_env, wait_until_listening

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RECEIVER = ROOT / "tests" / "support" / "receiver.py"


class Receiver:
    """The user's app: support/receiver.py on `port`, writing each request it gets to `log`."""

    def __init__(self, folder: Path, port: int | None = None):
        self.port = port or free_port()
        self.log = folder / f"receiver-{self.port}.jsonl"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/vonage-events"

    def start(self, *options: str) -> Receiver:
        command = [sys.executable, str(RECEIVER), str(self.port), SECRET, str(self.log), *options]
        self.process = subprocess.Popen(command, env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.port, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def delivered(self) -> Counter:
        """How many times each webhook-id was answered 2xx."""
        return Counter(got["id"] for got in self.requests() if 200 <= got["answered"] < 300)


@contextlib.contextmanager
def receiving(folder: Path, *options: str):
    folder.mkdir(parents=True, exist_ok=True)  # where the receiver writes what it got
    receiver = Receiver(folder).start(*options)
    try:
        yield receiver
    finally:
        receiver.stop()
