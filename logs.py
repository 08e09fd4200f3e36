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
from datetime import datetime, timezone

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
    return datetime.fromtimestamp(whole_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _extras(record: logging.LogRecord) -> dict:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}


class PrettyFormatter(logging.Formatter):
    """One line per message; a record carrying `payload` is followed by it as an indented block."""

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        payload = extras.pop("payload", None)
        line = f"{utc_timestamp(record.created)} {record.levelname.lower():7} {record.getMessage()}"
        if payload is None:
            return line
        block = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
        return f"{line}\n{block}\n---"


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
        return json.dumps(entry, ensure_ascii=False, default=str)


class _RecordQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: the output formatter reads their extra fields."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _BatchingListener(logging.handlers.QueueListener):
    """Writes every record waiting in the queue with one write and one flush, not one of each per record."""

    batch_limit = 512
    # After each write the thread rests this long, so requests logging meanwhile only append to the queue:
    # waking a waiting thread for every record costs a request more than formatting its line.
    pause_seconds = 0.005

    def _monitor(self):
        records = self.queue
        while True:
            batch = [records.get()]
            while len(batch) < self.batch_limit:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            stop = self._sentinel in batch
            lines = [_output.format(record) for record in batch if record is not self._sentinel]
            if lines:
                with _output.lock:
                    _output.stream.write("\n".join(lines) + "\n")
                    _output.flush()
            if stop:
                return
            time.sleep(self.pause_seconds)


_output = logging.StreamHandler(sys.stdout)


def output_handler() -> logging.Handler:
    """The handler whose formatter and stream the server's log is written with."""
    return _output


def configure_logging(log_format: str) -> logging.Logger:
    """Send the server's log (the `voice` logger) to standard output in the chosen format.

    Requests only queue their records; one thread writes them, so no request waits on the terminal
    or on another request's write.
    """
    _output.setFormatter(JsonFormatter() if log_format == "json" else PrettyFormatter())
    # Neither format shows the caller's file, thread or process: skip looking them up for every record
    # (the logging documentation's "Optimization" section lists these switches).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(handler, _RecordQueueHandler) for handler in logger.handlers):
        records: queue.SimpleQueue = queue.SimpleQueue()
        listener = _BatchingListener(records, _output)
        listener.start()
        atexit.register(listener.stop)
        logger.addHandler(_RecordQueueHandler(records))
    logger.setLevel(logging.INFO)
    return logger
