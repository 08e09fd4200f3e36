"""How a worker hands its writes to the call-log writer (calllog.writer) over the writer's Unix socket."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import socket
import struct
import threading

from calllog import frames
from calllog.schema import StorageError
from calllog.writer import REPLY_TIMEOUT_SECONDS
from logs import LOGGER_NAME

# The writer commits within its own timeout or fails the batch; this adds room for the reply to arrive.
WAIT_SECONDS = REPLY_TIMEOUT_SECONDS + 1
ANSWER_BATCH_SECONDS = 0.1
ANSWER_BACKLOG_LIMIT = 10_000

log = logging.getLogger(f"{LOGGER_NAME}.client")


class _Channel:
    """One connection to the writer: frames out, replies back in the order they were asked for; every wait
    bounded by WAIT_SECONDS (frames.bound_waits)."""

    def __init__(self, socket_path: str):
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(WAIT_SECONDS)
        try:
            connection.connect(socket_path)
            frames.bound_waits(connection, WAIT_SECONDS)
        except OSError as error:
            connection.close()
            raise StorageError(f"the call-log writer is not running ({error.strerror})") from None
        self._connection = connection

    def send(self, frame: bytes) -> None:
        """Send one frame that needs no reply. Raises OSError."""
        self._connection.sendall(frame)

    def request(self, frame: bytes) -> bool:
        """Send one frame and wait for its reply: True for a new event (or a flush done), False for a repeated
        delivery. Raises StorageError if the writer failed it, OSError if the connection did (a wait past
        WAIT_SECONDS is one)."""
        self._connection.sendall(frame)
        reply = self._receive(1)
        if reply in (frames.NEW, frames.DONE):
            return True
        if reply == frames.REPEATED:
            return False
        if reply == frames.FAILED:
            (length,) = struct.unpack("!I", self._receive(4))
            raise StorageError(self._receive(length).decode("utf-8", "replace"))
        raise ConnectionResetError("it closed the connection")

    def _receive(self, size: int) -> bytes:
        """Exactly `size` bytes, or fewer if the writer closed the connection."""
        return self._connection.recv(size, socket.MSG_WAITALL)

    def close(self) -> None:
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

    def record_event(self, row: tuple) -> bool:
        """Store one event (a row from calllog.rows.event_row) and wait for its commit: True if new, False for a
        repeated delivery. Raises StorageError if it was not committed (the caller answers 503: Vonage retries)."""
        frame = frames.encode(frames.EVENT, row)
        channel = getattr(self._local, "channel", None)
        if channel is None:
            channel = self._local.channel = self._open()
        try:
            return channel.request(frame)
        except (OSError, ValueError) as error:
            # The connection is in an unknown state: the next event opens a new one.
            self._local.channel = None
            self._forget(channel)
            raise StorageError(f"the call-log writer did not answer: {error or type(error).__name__}") from None

    def record_answer(self, row: dict) -> None:
        """Queue one answer decision (an answers row) for storage; never waits, never raises (failures are logged)."""
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
                    self._answers_channel.send(frames.encode(frames.ANSWERS, [json.dumps(rows)]))
                if wait:
                    self._answers_channel.request(frames.encode(frames.FLUSH, []))
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
