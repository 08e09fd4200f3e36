"""How a worker hands its writes to the call-log writer (calllog.writer) over the writer's Unix socket.

Under `make run` a worker's events come from its event loop (serving.edge) and travel on one connection of that
loop's (EventChannel); answer decisions are queued and sent by a thread of their own (WriterClient), which also
carries the events of an app served any other way (the tests' client, `flask` commands).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import socket
import struct
import threading
import time

from calllog import frames
from calllog.rows import EventRow
from calllog.schema import StorageError
from calllog.writer import REPLY_TIMEOUT_SECONDS
from runtime.logs import LOGGER_NAME

# The writer commits within its own timeout or fails the batch; this adds room for the reply to arrive.
WAIT_SECONDS = REPLY_TIMEOUT_SECONDS + 1
ANSWER_BATCH_SECONDS = 0.1
# Answer decisions kept in a worker's memory while the writer cannot store them (each about 1 KiB), retried every
# ANSWER_BATCH_SECONDS until it can. Past the limit the newest are refused and counted (voice_answers_unrecorded).
ANSWER_BACKLOG_LIMIT = 50_000
ANSWERS_PER_FRAME = 2000  # about 2 MiB, well under frames.MAX_FRAME
# Events one worker may have waiting for the writer at once; past it, an event is answered 503 at once.
EVENTS_WAITING_LIMIT = 2048
PING_SECONDS = 1.0

log = logging.getLogger(f"{LOGGER_NAME}.client")


class _Channel:
    """One connection to the writer: frames out, replies back in the order they were asked for; every wait
    bounded by WAIT_SECONDS (frames.bound_waits)."""

    def __init__(self, socket_path: str, seconds: float | None = None):
        seconds = WAIT_SECONDS if seconds is None else seconds
        try:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as error:  # out of descriptors, say: the caller answers 503, and Vonage sends it again
            raise StorageError(f"no connection to the call-log writer could be made ({error.strerror})") from None
        connection.settimeout(seconds)
        try:
            connection.connect(socket_path)
            frames.bound_waits(connection, seconds)
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

    def __init__(self, socket_path: str, on_unrecorded=None):
        """`on_unrecorded(count)` is told of answer decisions refused because the backlog is full."""
        self.socket_path = socket_path
        self._on_unrecorded = on_unrecorded or (lambda count: None)
        self._local = threading.local()
        self._channels: list[_Channel] = []
        self._channels_lock = threading.Lock()
        self._answers: collections.deque[dict] = collections.deque()
        self._answers_channel: _Channel | None = None
        self._answers_lock = threading.Lock()
        self._sender: threading.Thread | None = None
        self._closed = threading.Event()

    def record_event(self, row: EventRow) -> bool:
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
        """Queue one answer decision (an answers row) for storage; never waits, never raises. It is kept until the
        writer has committed it (sent again after any failure); only a full backlog refuses it, counted and logged."""
        if len(self._answers) >= ANSWER_BACKLOG_LIMIT:
            self._on_unrecorded(1)
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
        failing = False  # one line when the writer starts failing and one when it is back, not one per pass
        while not self._closed.wait(ANSWER_BATCH_SECONDS):
            try:
                self._send_answers(wait=False)
            except StorageError as error:
                if not failing:
                    log.error("answer decisions kept in memory until the call log can store them: %s", error)
                failing = True
                continue
            except Exception:
                # The sender must outlive any one batch, or no later answer would be recorded.
                log.exception("answer decisions kept in memory after an unexpected error")
                failing = True
                continue
            if failing:
                log.info("answer decisions stored again; none of those kept in memory was lost")
            failing = False

    def answers_waiting(self) -> int:
        """Answer decisions not yet committed."""
        return len(self._answers)

    def _send_answers(self, wait: bool) -> None:
        """Send the queued answer decisions and wait for their commit. Whatever was not committed (the writer
        failed it, or did not answer) goes back to the front of the queue, for the next pass; each row carries its
        own answer_key, so a batch that was in fact committed and is sent again is stored once."""
        with self._answers_lock:
            rows = []
            with contextlib.suppress(IndexError):
                while len(rows) < ANSWERS_PER_FRAME:
                    rows.append(self._answers.popleft())
            if not rows and not wait:
                return
            try:
                if self._answers_channel is None:
                    self._answers_channel = self._open()
                # The writer replies to an answers frame once its rows are committed (or says why not).
                frame = frames.encode(frames.ANSWERS, [json.dumps(rows)]) if rows else frames.encode(frames.FLUSH, [])
                self._answers_channel.request(frame)
            except (OSError, ValueError) as error:
                self._keep(rows)
                self._drop_answers_channel()
                raise StorageError(f"{len(rows)} answer decisions not stored yet ({type(error).__name__})") from None
            except StorageError:
                self._keep(rows)
                self._drop_answers_channel()
                raise

    def _keep(self, rows: list[dict]) -> None:
        """Put rows that were not committed back at the front of the queue, oldest first."""
        self._answers.extendleft(reversed(rows))

    def _drop_answers_channel(self) -> None:
        if self._answers_channel is not None:
            self._forget(self._answers_channel)
            self._answers_channel = None


def ping(socket_path: str, seconds: float = PING_SECONDS) -> str | None:
    """Whether the writer answers within `seconds` (it replies to a flush between two commits): None if it does,
    else why not, in a few words (for /health)."""
    try:
        channel = _Channel(socket_path, seconds)
    except StorageError as error:
        return str(error)
    try:
        channel.request(frames.encode(frames.FLUSH, []))
    except (OSError, ValueError, StorageError):
        return f"the call-log writer did not answer within {seconds:g} s"
    finally:
        channel.close()
    return None


class EventChannel:
    """A worker's events, sent from its event loop on one connection to the writer and acknowledged in order.

    The writer replies to a connection's events in the order they came, so each reply settles the oldest waiting
    future. Nothing here blocks the loop or holds a thread: an event waiting for its commit is a future. A
    connection with a reply overdue by WAIT_SECONDS is taken for lost: every event on it fails (503: Vonage sends
    them again) and the next event opens a new one.
    """

    def __init__(self, socket_path: str, limit: int = EVENTS_WAITING_LIMIT):
        self.socket_path = socket_path
        self.limit = limit
        self._protocol: _ReplyProtocol | None = None
        self._connecting: asyncio.Future | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    def waiting(self) -> int:
        return 0 if self._protocol is None else len(self._protocol.waiting)

    async def record_event(self, row: EventRow) -> bool:
        """Store one event and wait for its commit: True if new, False for a repeated delivery. Raises
        StorageError if it was not committed."""
        protocol = self._protocol or await self._connect()
        if len(protocol.waiting) >= self.limit:
            raise StorageError(f"{self.limit} events are already waiting for the call-log writer")
        future = asyncio.get_running_loop().create_future()
        protocol.waiting.append((time.monotonic(), future))
        protocol.transport.write(frames.encode(frames.EVENT, row))
        return await future

    async def _connect(self) -> _ReplyProtocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None

    async def _open(self) -> _ReplyProtocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                _, protocol = await loop.create_unix_connection(lambda: _ReplyProtocol(self), self.socket_path)
        except (OSError, TimeoutError) as error:
            raise StorageError(f"the call-log writer is not running ({error.strerror or 'no answer'})") from None
        self._protocol = protocol
        if self._watchdog is None:
            self._watchdog = loop.call_later(1.0, self._watch)
        return protocol

    def _watch(self) -> None:
        """Once a second: a reply overdue by WAIT_SECONDS means the connection (or the writer) is lost."""
        protocol = self._protocol
        if protocol is not None and protocol.waiting:
            since, _ = protocol.waiting[0]
            if time.monotonic() - since > WAIT_SECONDS:
                protocol.fail(f"no reply within {WAIT_SECONDS:g} s")
        self._watchdog = asyncio.get_running_loop().call_later(1.0, self._watch)

    def lost(self, protocol: _ReplyProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._protocol is not None:
            self._protocol.fail("the server is stopping")


class _ReplyProtocol(asyncio.Protocol):
    """The loop's side of one connection to the writer: replies read as they arrive, each settling a future."""

    def __init__(self, channel: EventChannel):
        self.channel = channel
        self.waiting: collections.deque[tuple[float, asyncio.Future]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while buffer:
            kind = bytes(buffer[:1])
            if kind == frames.FAILED:
                if len(buffer) < 5:
                    return
                (length,) = struct.unpack_from("!I", buffer, 1)
                if len(buffer) < 5 + length:
                    return
                outcome = StorageError(bytes(buffer[5 : 5 + length]).decode("utf-8", "replace"))
                del buffer[: 5 + length]
            elif kind in (frames.NEW, frames.DONE, frames.REPEATED):
                outcome = kind != frames.REPEATED
                del buffer[:1]
            else:
                self.fail(f"an unknown reply {kind!r}")
                return
            if not self.waiting:
                self.fail("a reply nothing waited for")
                return
            _, future = self.waiting.popleft()
            if not future.done():
                if isinstance(outcome, StorageError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def connection_lost(self, error: Exception | None) -> None:
        self.fail("it closed the connection")

    def fail(self, reason: str) -> None:
        """Fail every event still waiting on this connection, and close it."""
        self.channel.lost(self)
        waiting, self.waiting = self.waiting, collections.deque()
        for _, future in waiting:
            if not future.done():
                future.set_exception(StorageError(f"the call-log writer did not answer: {reason}"))
        if self.transport is not None:
            self.transport.close()
