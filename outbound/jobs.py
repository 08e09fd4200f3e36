"""The job runner: each kind of background job (a recording to fetch, an event to forward) runs on a thread of its
own, so a slow one never holds up another, and never holds up a webhook: under `make run` the runner lives in
serve.py's own process, beside granian's workers, and an app built any other way (`flask run`) runs it itself.

A job keeps its work in the database, not in memory: a runner that stops (or is killed) loses nothing, and the next
one, or another server's on the same PostgreSQL database, takes it up (each job's own claim says how).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from runtime.logs import LOGGER_NAME

log = logging.getLogger(f"{LOGGER_NAME}.jobs")

# The longest a job waits before it looks for work again, however long it asked to wait: new work is in the
# database, and this is how soon it is seen.
POLL_SECONDS = 1.0
# How long a job that failed unexpectedly waits before it runs again.
FAILED_JOB_SECONDS = 5.0


class Job(Protocol):
    name: str

    def run_due(self, now: float) -> float:
        """Do the work that is due at `now`; return how many seconds until it wants to run again."""

    def close(self) -> None:
        """Release what the job holds (connections, clients)."""


class Jobs:
    """Runs each job on its own thread until stopped."""

    def __init__(self, jobs: list[Job], stopping: threading.Event | None = None):
        self.jobs = jobs
        self._stopping = stopping or threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for job in self.jobs:
            thread = threading.Thread(target=self._run, args=(job,), name=f"job-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, job: Job) -> None:
        while not self._stopping.is_set():
            try:
                wait = job.run_due(time.time())
            except Exception:
                log.exception("the %s job failed; it runs again in %g s", job.name, FAILED_JOB_SECONDS)
                wait = FAILED_JOB_SECONDS
            self._stopping.wait(max(0.0, min(wait, POLL_SECONDS)))

    def stop(self, timeout: float = 10) -> None:
        """Stop every job after the step it is in (its work stays in the database), then close them."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for job in self.jobs:
            try:
                job.close()
            except Exception:
                log.exception("the %s job did not close cleanly", job.name)
        self._threads = []

    @property
    def stopping(self) -> threading.Event:
        """Set once the runner is told to stop: a long step (a download) checks it to stop early."""
        return self._stopping
