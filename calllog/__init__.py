"""The call log: every event and answer decision, stored by the call-log writer and read back by queries.

schema      tables, migrations, the database
committer   the one group commit: a batch of writes in one transaction
writer      the call-log writer (a process under `make run`, else a thread) that runs the committer
retention   removing conversations older than CALL_LOG_RETENTION (by the writer) or `flask prune`
client      how a worker hands its writes to the writer
queries     reading conversations, legs, answers and events
legs        folding a leg's events into its record
deliveries  forwarding to the user's app: the rows the committer adds, claimed and settled by the forwarder
api, page   /api/calls with `flask calls`, and the /calls page
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from calllog.client import WriterClient, ping
from calllog.deliveries import Forwarding
from calllog.queries import CallLogReader
from calllog.schema import Database, StorageError
from calllog.writer import WriterThread

if TYPE_CHECKING:  # not imported here: serve.py imports this package before it sets PROMETHEUS_MULTIPROC_DIR
    from runtime.metrics import Metrics

__all__ = ["CallLog", "StorageError"]


class CallLog:
    """The call log as one app process uses it: writes through the writer, reads from the database.

    With `writer_socket` (set by `make run` for its workers) it writes through that writer process; without,
    it starts a writer thread of its own on a socket in a private folder. Either way every write takes the
    same path: over a socket to the writer, committed by the committer. `close` releases all of it. Read failures
    and the writer thread's commits are counted in `metrics`. A writer thread of its own prunes what is older than
    `retention`, if given, and adds the deliveries of `forwarding` (the writer process reads both itself).
    """

    def __init__(
        self,
        database_url: str,
        writer_socket: str | None,
        metrics: Metrics,
        retention: timedelta | None = None,
        forwarding: Forwarding | None = None,
    ):
        self.database = Database(database_url)
        self.reader = CallLogReader(self.database, on_failure=metrics.read_errors.inc)
        self._folder: str | None = None
        self._writer: WriterThread | None = None
        self._closed = False
        if writer_socket is None:
            self._folder = tempfile.mkdtemp(prefix="voice-writer-")
            socket_path = str(Path(self._folder) / "writer.sock")
            self._writer = WriterThread(database_url, socket_path, metrics, retention, forwarding=forwarding)
            self._writer.start()
            writer_socket = self._writer.socket_path
        self.client = WriterClient(writer_socket, on_unrecorded=metrics.answers_unrecorded.inc)

    def writer_health(self) -> dict:
        """The writer as it is, for /health: whether it answers now, and the answer decisions still waiting for it."""
        problem = ping(self.client.socket_path)
        health = {"status": "ok" if problem is None else "unavailable"}
        if problem is not None:
            health["error"] = problem
        health["answers_waiting"] = self.client.answers_waiting()
        return health

    def close(self) -> None:
        """Send what is queued, then close the client, the writer thread (if any), the database and the folder.
        Once: the app that made it closes it (app.py, at exit or when a test is done with it)."""
        if self._closed:
            return
        self._closed = True
        self.client.close()
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        self.database.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
