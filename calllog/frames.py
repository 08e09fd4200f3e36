"""The messages between a worker and the call-log writer: length-prefixed frames of text fields.

A frame is its length (4 bytes, network order), one byte saying what it is, then each field as its length and
its UTF-8 bytes (the length 0xFFFFFFFF stands for None). Nothing is escaped or parsed: a payload travels as the
text it is. The writer answers each event and flush with one reply: a byte, and for a failure its reason.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

EVENT, ANSWERS, FLUSH = b"E", b"A", b"F"
NEW, REPEATED, DONE, FAILED = b"N", b"R", b"D", b"X"

_LENGTH = struct.Struct("!I")
_NONE = 0xFFFFFFFF
MAX_FRAME = 16 * 1024 * 1024


def bound_waits(connection: socket.socket, seconds: float) -> None:
    """Make `connection` blocking, with every receive and send limited to `seconds` by the kernel (SO_RCVTIMEO,
    SO_SNDTIMEO; a wait past it raises OSError). Python's own socket timeout would poll before every call: two
    more system calls on every event, on both sides."""
    connection.settimeout(None)
    limit = struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)


class FrameError(ValueError):
    """Bytes that are not a frame this protocol sends."""


def encode(kind: bytes, fields: Sequence[str | bool | None]) -> bytes:
    """One frame of `kind` carrying `fields` (text, a flag, or None)."""
    parts = [kind]
    for value in fields:
        if value is None:
            parts.append(_LENGTH.pack(_NONE))
            continue
        if value is True or value is False:
            value = "1" if value else "0"
        data = value.encode("utf-8")
        parts += (_LENGTH.pack(len(data)), data)
    body = b"".join(parts)
    return _LENGTH.pack(len(body)) + body


def encode_failure(reason: str) -> bytes:
    """The reply that says an event or flush was not committed, and why."""
    data = reason.encode("utf-8", "replace")
    return FAILED + _LENGTH.pack(len(data)) + data


class FrameReader:
    """Collects the bytes of one connection and hands out each complete frame as (kind, fields)."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, list[str | None]]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length == 0 or length > MAX_FRAME:
                raise FrameError(f"a frame of {length} bytes")
            if len(self._buffer) < 4 + length:
                break
            body = bytes(self._buffer[4 : 4 + length])
            del self._buffer[: 4 + length]
            frames.append((body[:1], _fields(body)))
        return frames


def _fields(body: bytes) -> list[str | None]:
    fields: list[str | None] = []
    position = 1
    while position < len(body):
        if position + 4 > len(body):
            raise FrameError("a field cut short")
        (length,) = _LENGTH.unpack_from(body, position)
        position += 4
        if length == _NONE:
            fields.append(None)
            continue
        if position + length > len(body):
            raise FrameError("a field longer than its frame")
        fields.append(body[position : position + length].decode("utf-8"))
        position += length
    return fields
