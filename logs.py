"""Log output: readable blocks for people (LOG_FORMAT=pretty) or one JSON object per line (LOG_FORMAT=json)."""

from __future__ import annotations

import atexit
import functools
import json
import logging
import logging.handlers
import queue
import sys
import time
from datetime import UTC, datetime

LOGGER_NAME = "voice"
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def utc_timestamp(epoch_seconds: float) -> str:
    """An ISO 8601 UTC time with milliseconds, as Vonage writes them: 2021-03-10T10:36:21.285Z."""
    whole = int(epoch_seconds // 1)
    # Round to microseconds first, as datetime does, so binary fractions such as .285 stay .285.
    microseconds = round((epoch_seconds - whole) * 1_000_000)
    if microseconds >= 1_000_000:
        whole, microseconds = whole + 1, microseconds - 1_000_000
    return f"{_utc_second(whole)}.{microseconds // 1000:03d}Z"


@functools.lru_cache(maxsize=8)
def _utc_second(whole_seconds: int) -> str:
    # Every log line and stored event needs one; formatting a date costs more than the rest of a log line.
    return datetime.fromtimestamp(whole_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _extras(record: logging.LogRecord) -> dict:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}


class PrettyFormatter(logging.Formatter):
    """One line per message; a record carrying `payload` is followed by it as an indented block."""

    def format(self, record: logging.LogRecord) -> str:
        payload = getattr(record, "payload", None)
        line = f"{utc_timestamp(record.created)} {record.levelname.lower():7} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if payload is None:
            return line
        return f"{line}\n{payload_block(payload)}\n---"


_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


def payload_block(payload) -> str:
    """A payload as an indented JSON block, one field a line; a nested value stays on its field's line.

    For the flat payloads Vonage sends it is what json.dumps(indent=2) writes, at a fifth of the cost:
    indenting makes json use its pure-Python encoder, and every event's block is written.
    """
    if not isinstance(payload, dict) or not payload:
        return _encode(payload)
    return (
        "{\n" + ",\n".join(["  " + _encode(str(key)) + ": " + _encode(value) for key, value in payload.items()]) + "\n}"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and every field passed in `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


class _OutputHandler(logging.StreamHandler):
    """Writes each record's line without flushing (the log thread flushes when it has caught up), and never
    fails on a character the output's encoding cannot hold: such a line is written with escapes instead."""

    terminator = "\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            try:
                self.stream.write(line)
            except UnicodeEncodeError:
                encoding = getattr(self.stream, "encoding", None) or "utf-8"
                self.stream.write(line.encode(encoding, "backslashreplace").decode(encoding))
        except Exception:
            self.handleError(record)


class RecordQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the log thread as they are (the formatter reads their extra fields), and drops them
    rather than grow without bound when the output cannot keep up."""

    def __init__(self, records: queue.SimpleQueue, limit: int):
        super().__init__(records)
        self.limit = limit
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.queue.qsize() >= self.limit:
            self.dropped += 1
            return
        self.queue.put_nowait(record)


class _LogThread(logging.handlers.QueueListener):
    """The one thread that writes the log: it flushes the output only once it has caught up, then rests
    briefly, so requests logging meanwhile only append to the queue instead of waking it for every record."""

    pause_seconds = 0.005

    def __init__(self, records: queue.SimpleQueue, handler: logging.Handler, source: RecordQueueHandler):
        super().__init__(records, handler)
        self.source = source

    def dequeue(self, block: bool) -> logging.LogRecord:
        try:
            return self.queue.get_nowait()
        except queue.Empty:
            pass
        self._caught_up()
        time.sleep(self.pause_seconds)
        return self.queue.get(block)

    def handle(self, record: logging.LogRecord) -> None:
        # Whatever goes wrong with one record, the thread must go on writing the others.
        try:
            super().handle(record)
        except Exception:
            _output.handleError(record)

    def _caught_up(self) -> None:
        dropped, self.source.dropped = self.source.dropped, 0
        try:
            if dropped:
                _output.stream.write(f"{dropped} log records were dropped: the output could not keep up\n")
            _output.flush()
        except Exception:
            pass


def _no_caller(stack_info: bool = False, stacklevel: int = 1) -> tuple[str, int, str, None]:
    return "(unknown file)", 0, "(unknown function)", None


_output = _OutputHandler(sys.stdout)
QUEUE_LIMIT = 100_000


def output_handler() -> logging.Handler:
    """The handler whose formatter and stream the server's log is written with."""
    return _output


def configure_logging(log_format: str) -> logging.Logger:
    """Send the server's log (the `voice` logger) to standard output in the chosen format.

    Requests only queue their records; one thread writes them, so no request waits on the terminal
    or on another request's write.
    """
    _output.setFormatter(JsonFormatter() if log_format == "json" else PrettyFormatter())
    # Neither format shows the thread or process: skip looking them up for every record
    # (the logging documentation's "Optimization" section lists these switches).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger(LOGGER_NAME)
    # Neither format shows where a record was logged from: skip walking the stack for it on every call.
    logger.findCaller = _no_caller
    if not any(isinstance(handler, RecordQueueHandler) for handler in logger.handlers):
        records: queue.SimpleQueue = queue.SimpleQueue()
        source = RecordQueueHandler(records, QUEUE_LIMIT)
        listener = _LogThread(records, _output, source)
        listener.start()
        atexit.register(listener.stop)
        logger.addHandler(source)
    logger.setLevel(logging.INFO)
    return logger
