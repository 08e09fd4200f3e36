"""How a worker hands its writes to the call-log writer (calllog.writer) over the writer's Unix socket."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import socket
import threading

from calllog.schema import StorageError
from calllog.writer import REPLY_TIMEOUT_SECONDS
from logs import LOGGER_NAME

# The writer commits within its own timeout or fails the batch; this adds room for the reply to arrive.
WAIT_SECONDS = REPLY_TIMEOUT_SECONDS + 1
ANSWER_BATCH_SECONDS = 0.02
ANSWER_BACKLOG_LIMIT = 10_000

log = logging.getLogger(f"{LOGGER_NAME}.client")


class _Channel:
    """One connection to the writer: newline-delimited JSON messages out, replies back in order."""

    def __init__(self, socket_path: str):
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(WAIT_SECONDS)
        try:
            connection.connect(socket_path)
        except OSError as error:
            connection.close()
            raise StorageError(f"the call-log writer is not running ({error.strerror})") from None
        self._file = connection.makefile("rwb")
        self._connection = connection

    def send(self, message: dict, reply: bool) -> dict | None:
        """Send one message; with `reply`, wait for the writer's answer. Raises OSError or StorageError."""
        self._file.write(json.dumps(message, ensure_ascii=False, default=str).encode() + b"\n")
        self._file.flush()
        if not reply:
            return None
        line = self._file.readline()
        if not line:
            raise StorageError("the call-log writer closed the connection")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._connection.close()


class WriterClient:
    """The worker's side of the writer: events wait for their commit; answer decisions go in batches.

    Each request thread has a connection of its own, so replies never cross; answer decisions are queued
    (an append, no lock) and sent every ANSWER_BATCH_SECONDS by one sender thread on a connection of its own.
    """

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self._local = threading.local()
        self._channels: list[_Channel] = []
        self._channels_lock = threading.Lock()
        self._answers: collections.deque[dict] = collections.deque()
        self._answers_channel: _Channel | None = None
        self._answers_lock = threading.Lock()
        self._sender: threading.Thread | None = None
        self._closed = threading.Event()

    def record_event(self, payload: dict, received_at: str, verified: bool) -> bool:
        """Store one event and wait for its commit: True if new, False for a repeated delivery.

        Raises StorageError if it was not committed (the caller answers 503 so Vonage retries).
        """
        message = {"op": "event", "payload": payload, "received_at": received_at, "verified": verified}
        reply = self._request(message)
        if not reply["ok"]:
            raise StorageError(reply["error"])
        return reply["new"]

    def record_answer(self, row: dict) -> None:
        """Queue one answer decision for storage; never waits, never raises (a failure is logged)."""
        if len(self._answers) >= ANSWER_BACKLOG_LIMIT:
            log.error("answer decision not recorded: %s are already waiting for the writer", ANSWER_BACKLOG_LIMIT)
            return
        self._answers.append(row)
        if self._sender is None:
            self._start_sender()

    def flush(self) -> None:
        """Send the queued answer decisions now and wait until the writer has committed them."""
        self._send_answers(wait=True)

    def close(self) -> None:
        """Send what is queued, stop the sender and close every connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(StorageError):
            self._send_answers(wait=False)
        if self._sender is not None:
            self._sender.join(timeout=WAIT_SECONDS)
        with self._channels_lock:
            channels, self._channels = self._channels, []
        for channel in channels:
            channel.close()

    def _request(self, message: dict) -> dict:
        channel = getattr(self._local, "channel", None)
        if channel is None:
            channel = self._local.channel = self._open()
        try:
            return channel.send(message, reply=True)
        except (OSError, StorageError, ValueError) as error:
            self._local.channel = None
            self._forget(channel)
            if isinstance(error, StorageError):
                raise
            raise StorageError(f"the call-log writer did not answer ({type(error).__name__})") from None

    def _open(self) -> _Channel:
        channel = _Channel(self.socket_path)
        with self._channels_lock:
            self._channels.append(channel)
        return channel

    def _forget(self, channel: _Channel) -> None:
        channel.close()
        with self._channels_lock:
            if channel in self._channels:
                self._channels.remove(channel)

    def _start_sender(self) -> None:
        with self._answers_lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_answers_forever, name="answer-sender", daemon=True)
                self._sender.start()

    def _send_answers_forever(self) -> None:
        while not self._closed.wait(ANSWER_BATCH_SECONDS):
            try:
                self._send_answers(wait=False)
            except StorageError as error:
                log.error("answer decisions not recorded: %s", error)
            except Exception:
                # The sender must outlive any one batch, or no later answer would be recorded.
                log.exception("answer decisions not recorded")

    def _send_answers(self, wait: bool) -> None:
        """Send every queued answer decision on the answers connection; with `wait`, until committed."""
        with self._answers_lock:
            rows = []
            with contextlib.suppress(IndexError):
                while True:
                    rows.append(self._answers.popleft())
            if not rows and not wait:
                return
            try:
                if self._answers_channel is None:
                    self._answers_channel = self._open()
                if rows:
                    self._answers_channel.send({"op": "answers", "rows": rows}, reply=False)
                if wait:
                    self._answers_channel.send({"op": "flush"}, reply=True)
            except (OSError, ValueError) as error:
                self._drop_answers_channel()
                raise StorageError(f"{len(rows)} answer decisions not sent ({type(error).__name__})") from None
            except StorageError:
                self._drop_answers_channel()
                raise

    def _drop_answers_channel(self) -> None:
        if self._answers_channel is not None:
            self._forget(self._answers_channel)
            self._answers_channel = None
