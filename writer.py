"""The call-log writer: one process that commits the server workers' writes, grouped, before they are acknowledged.

`make run` starts it beside the granian workers. Each worker sends its writes over a Unix socket and waits for
the commit; the writer's own interpreter does the database work, so it neither waits for a worker's GIL nor
takes turns with the other workers for SQLite's write lock.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from storage import BATCH_LIMIT, COMMIT_TIMEOUT_SECONDS, Store, StorageError, Write, answer_write, event_write

log = logging.getLogger("voice.writer")
REPLY_TIMEOUT_SECONDS = COMMIT_TIMEOUT_SECONDS + 1
ANSWER_BATCH_SECONDS = 0.02
ANSWER_BACKLOG_LIMIT = 10_000


class RemoteWriter:
    """The worker's side: sends writes to the writer process, one connection per request thread."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self._local = threading.local()
        # Answer decisions go in batches, from one thread, so answering a call costs only an append:
        # deque.append and popleft need no lock.
        self._answers: collections.deque[dict] = collections.deque()
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()

    def _channel(self):
        channel = getattr(self._local, "channel", None)
        if channel is None:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(REPLY_TIMEOUT_SECONDS)
            try:
                connection.connect(self.socket_path)
            except OSError as error:
                connection.close()
                raise StorageError(f"the call-log writer is not running ({error.strerror})") from None
            channel = self._local.channel = connection.makefile("rwb")
        return channel

    def _drop(self) -> None:
        channel = getattr(self._local, "channel", None)
        self._local.channel = None
        if channel is not None:
            try:
                channel.close()
            except OSError:
                pass

    def _send(self, message: dict, reply: bool) -> dict | None:
        channel = self._channel()
        try:
            channel.write(json.dumps(message, ensure_ascii=False, default=str).encode() + b"\n")
            channel.flush()
            if not reply:
                return None
            line = channel.readline()
        except OSError as error:
            self._drop()
            raise StorageError(f"the call-log writer did not answer ({type(error).__name__})") from None
        if not line:
            self._drop()
            raise StorageError("the call-log writer closed the connection")
        return json.loads(line)

    def record_event(self, payload: dict, received_at: str, verified: bool) -> bool:
        answer = self._send({"op": "event", "payload": payload, "received_at": received_at, "verified": verified}, True)
        if not answer["ok"]:
            raise StorageError(answer["error"])
        return answer["new"]

    def record_answer(self, row: dict) -> None:
        if len(self._answers) >= ANSWER_BACKLOG_LIMIT:
            log.error("answer decision not recorded: %s are already waiting for the writer", ANSWER_BACKLOG_LIMIT)
            return
        self._answers.append(row)
        if self._sender is None:
            self._start_sender()

    def _start_sender(self) -> None:
        with self._sender_lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_answers_forever, name="answer-sender", daemon=True)
                self._sender.start()

    def _send_answers_forever(self) -> None:
        while True:
            rows = []
            try:
                while True:
                    rows.append(self._answers.popleft())
            except IndexError:
                pass
            if rows:
                try:
                    self._send({"op": "answers", "rows": rows}, False)
                except StorageError as error:
                    log.error("%d answer decisions not recorded: %s", len(rows), error)
                except Exception:
                    # The sender must outlive any one batch, or no later answer would be recorded.
                    log.exception("%d answer decisions not recorded", len(rows))
            time.sleep(ANSWER_BATCH_SECONDS)


class WriterServer:
    """The writer's side: one thread reads every worker's connection, commits all that has arrived as one
    transaction, then replies to each waiting worker. Whatever arrives during a commit is the next batch."""

    def __init__(self, socket_path: str, store: Store):
        self.socket_path = socket_path
        self.store = store
        self._selector = selectors.DefaultSelector()
        self._unread: dict[socket.socket, bytes] = {}

    def serve_forever(self) -> None:
        listener = self._listen()
        self._selector.register(listener, selectors.EVENT_READ)
        while True:
            writes: list[Write] = []
            waiting: list[tuple[socket.socket, Write]] = []
            for key, _ in self._selector.select():
                if key.fileobj is listener:
                    self._accept(listener)
                    continue
                try:
                    for message in self._read(key.fileobj):
                        if message["op"] == "answers":
                            writes.extend(answer_write(row) for row in message["rows"])
                        else:
                            write = event_write(message["payload"], message["received_at"], message["verified"])
                            writes.append(write)
                            waiting.append((key.fileobj, write))
                except Exception:
                    # Only this connection's worker is affected: it answers 503 and Vonage sends the event again.
                    log.exception("unreadable message from a worker; closing its connection")
                    self._close(key.fileobj)
            for start in range(0, len(writes), BATCH_LIMIT):
                self.store.commit_batch(writes[start : start + BATCH_LIMIT])
            self._reply(waiting)

    def _listen(self) -> socket.socket:
        path = Path(self.socket_path)
        # Bind under another name and move it into place once listening: whoever finds the socket can connect.
        pending = path.with_name(path.name + ".starting")
        pending.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(pending))
        os.chmod(pending, 0o600)
        listener.listen(512)
        os.replace(pending, path)
        return listener

    def _accept(self, listener: socket.socket) -> None:
        connection, _ = listener.accept()
        # Reads wait for the selector; a reply that cannot be sent in time drops the connection.
        connection.settimeout(REPLY_TIMEOUT_SECONDS)
        self._selector.register(connection, selectors.EVENT_READ)
        self._unread[connection] = b""

    def _read(self, connection: socket.socket) -> list[dict]:
        """The complete messages that have arrived on a readable connection (none if it closed)."""
        try:
            data = connection.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return []
        *lines, self._unread[connection] = (self._unread[connection] + data).split(b"\n")
        return [json.loads(line) for line in lines]

    def _reply(self, waiting: list[tuple[socket.socket, Write]]) -> None:
        replies: dict[socket.socket, list[bytes]] = {}
        for connection, write in waiting:
            try:
                reply = {"ok": True, "new": write.outcome()}
            except StorageError as error:
                reply = {"ok": False, "error": str(error)}
            replies.setdefault(connection, []).append(json.dumps(reply).encode() + b"\n")
        for connection, lines in replies.items():
            if connection in self._unread:  # still open
                try:
                    connection.sendall(b"".join(lines))
                except OSError:
                    self._close(connection)

    def _close(self, connection: socket.socket) -> None:
        self._selector.unregister(connection)
        self._unread.pop(connection, None)
        connection.close()


def wait_until_ready(socket_path: str, process, timeout: float = 30) -> None:
    """Block until the writer accepts connections; raise RuntimeError if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the call-log writer exited with {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(socket_path)
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("the call-log writer did not start")


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main(socket_path: str) -> int:
    from config import ConfigError, load_settings
    from logs import configure_logging

    # Ctrl-C reaches the whole process group; serve.py stops the writer itself, after the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    store = Store(settings.database_url)
    try:
        store.ensure_schema()
    except StorageError as error:
        log.error("call log unavailable at start-up: %s", error)
    WriterServer(socket_path, store).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
