"""The call-log writer: commits every worker's writes, grouped, before any of them is acknowledged.

It listens on a Unix socket. Each worker sends its writes there (see calllog.client) and waits for the commit.
One thread reads every connection, commits all that has arrived as one transaction, then replies to each
waiting worker; whatever arrives during a commit is the next batch. `make run` runs it as a process of its
own (calllog/writer_process.py), so the database work neither waits for a worker's GIL nor takes
turns with the other workers; the app run any other way (tests, `flask` commands) runs it in a thread.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from calllog import frames
from calllog.committer import BATCH_LIMIT, Committer
from calllog.deliveries import Forwarding
from calllog.retention import BackgroundPrune
from calllog.rows import EVENT_COLUMNS, EventRow
from calllog.schema import Database, StorageError
from runtime.logs import LOGGER_NAME

if TYPE_CHECKING:  # not imported here: serve.py imports this module before it sets PROMETHEUS_MULTIPROC_DIR
    from runtime.metrics import Metrics

REPLY_TIMEOUT_SECONDS = 5.0
ANSWERED = None  # in _Batch.waiting: a reply about the batch's answer decisions, not about one event
VERIFIED = EVENT_COLUMNS.index("verified")

log = logging.getLogger(f"{LOGGER_NAME}.writer")


class _Batch:
    """What one pass over the ready connections read: rows to commit, and who waits for which reply."""

    def __init__(self):
        self.event_rows: list[EventRow] = []
        self.answer_rows: list[dict] = []
        # (connection, index into event_rows, or ANSWERED for an answers frame or a flush, told when the answer
        # decisions of the batch are stored)
        self.waiting: list[tuple[socket.socket, int | None]] = []

    def add(self, connection: socket.socket, kind: bytes, fields: list[str | None]) -> None:
        if kind == frames.EVENT:
            if len(fields) != len(EVENT_COLUMNS):
                raise frames.FrameError(f"an event of {len(fields)} fields")
            fields[VERIFIED] = fields[VERIFIED] == "1"
            self.waiting.append((connection, len(self.event_rows)))
            self.event_rows.append(EventRow._make(fields))
        elif kind == frames.ANSWERS:
            self.answer_rows.extend(json.loads(fields[0]))
            self.waiting.append((connection, ANSWERED))
        elif kind == frames.FLUSH:
            self.waiting.append((connection, ANSWERED))
        else:
            raise frames.FrameError(f"unknown frame {kind!r}")


class WriterServer:
    """The writer's loop over its socket. `serve_forever` runs until `stop` is called from another thread.

    With `pruning` (CALL_LOG_RETENTION set), a chunk of pruning runs between batches whenever it is due.
    """

    def __init__(self, socket_path: str, committer: Committer, pruning: BackgroundPrune | None = None):
        self.socket_path = socket_path
        self.committer = committer
        self.pruning = pruning
        self._selector = selectors.DefaultSelector()
        self._unread: dict[socket.socket, frames.FrameReader] = {}
        self._listener: socket.socket | None = None
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopping = threading.Event()

    def listen(self) -> None:
        """Start listening; the socket appears at `socket_path` only once connections to it are accepted."""
        path = Path(self.socket_path)
        pending = path.with_name(path.name + ".starting")
        pending.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(pending))
        os.chmod(pending, 0o600)
        listener.listen(512)
        os.replace(pending, path)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)

    def serve_forever(self) -> None:
        if self._listener is None:
            self.listen()
        try:
            while not self._stopping.is_set():
                self._commit_and_reply(self._read_ready())
                if self.pruning is not None and not self._stopping.is_set():
                    self.pruning.step()
        finally:
            self._close_everything()

    def stop(self) -> None:
        """Finish the batch in hand (commit it and reply), then close every connection and the socket."""
        self._stopping.set()
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass

    def _read_ready(self) -> _Batch:
        batch = _Batch()
        timeout = None if self.pruning is None else self.pruning.seconds_until_due()
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._listener:
                self._accept()
            elif key.fileobj is self._wake_reader:
                self._wake_reader.recv(64)
            else:
                connection = key.fileobj
                try:
                    for kind, fields in self._read(connection):
                        batch.add(connection, kind, fields)
                except Exception:
                    # Only this connection's worker is affected: it answers 503 and Vonage sends the event again.
                    log.exception("unreadable message from a worker; closing its connection")
                    self._close(connection)
        return batch

    def _commit_and_reply(self, batch: _Batch) -> None:
        outcomes = []
        answer_rows = batch.answer_rows
        answers_failed = None
        for start in range(0, max(len(batch.event_rows), 1), BATCH_LIMIT):
            committed = self.committer.commit(batch.event_rows[start : start + BATCH_LIMIT], answer_rows)
            outcomes += committed
            answers_failed = answers_failed or committed.answers_failed
            answer_rows = []
        replies: dict[socket.socket, list[bytes]] = {}
        for connection, index in batch.waiting:
            outcome = (answers_failed or True) if index is ANSWERED else outcomes[index]
            if isinstance(outcome, StorageError):
                reply = frames.encode_failure(str(outcome))
            else:
                reply = frames.NEW if outcome is True else frames.REPEATED
            replies.setdefault(connection, []).append(reply)
        for connection, lines in replies.items():
            if connection in self._unread:  # still open
                try:
                    connection.sendall(b"".join(lines))
                except OSError:
                    self._close(connection)

    def _accept(self) -> None:
        connection, _ = self._listener.accept()
        # Reads wait for the selector; a reply that cannot be sent in time drops the connection.
        frames.bound_waits(connection, REPLY_TIMEOUT_SECONDS)
        self._selector.register(connection, selectors.EVENT_READ)
        self._unread[connection] = frames.FrameReader()

    def _read(self, connection: socket.socket) -> list[tuple[bytes, list[str | None]]]:
        """The complete frames that have arrived on a readable connection (none if it closed)."""
        try:
            data = connection.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return []
        return self._unread[connection].feed(data)

    def _close(self, connection: socket.socket) -> None:
        self._selector.unregister(connection)
        self._unread.pop(connection, None)
        connection.close()

    def _close_everything(self) -> None:
        for connection in list(self._unread):
            self._close(connection)
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            Path(self.socket_path).unlink(missing_ok=True)
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()
        self.committer.close()


def writer_server(
    database: Database,
    socket_path: str,
    metrics: Metrics,
    retention: timedelta | None,
    clock=time.time,
    forwarding: Forwarding | None = None,
) -> WriterServer:
    """The call log's writer, as both ways of running it assemble it: its committer on `database` (adding the
    deliveries of `forwarding`, if any), and with `retention` a background prune of what is older (`clock` gives
    the time, for tests)."""
    pruning = None if retention is None else BackgroundPrune(database, retention, clock=clock)
    return WriterServer(socket_path, Committer(database, metrics, forwarding, clock), pruning)


class WriterThread:
    """The writer in a thread of this process, on its own database connection: for the app run outside `make run`.

    With `retention`, it prunes the call log of what is older (`clock` gives the time, for tests); with
    `forwarding`, it adds each new event's deliveries.
    """

    def __init__(
        self,
        database_url: str,
        socket_path: str,
        metrics: Metrics,
        retention: timedelta | None = None,
        clock=time.time,
        forwarding: Forwarding | None = None,
    ):
        self.database = Database(database_url)
        self.server = writer_server(self.database, socket_path, metrics, retention, clock, forwarding)
        self._thread = threading.Thread(target=self.server.serve_forever, name="call-log-writer", daemon=True)

    @property
    def socket_path(self) -> str:
        return self.server.socket_path

    def start(self) -> None:
        self.server.listen()
        self._thread.start()

    def stop(self) -> None:
        self.server.stop()
        self._thread.join(timeout=REPLY_TIMEOUT_SECONDS * 2)
        self.database.close()
