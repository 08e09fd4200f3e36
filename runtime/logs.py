"""Log output: readable blocks for people (LOG_FORMAT=pretty), one JSON object per line (LOG_FORMAT=json), or one
short line per webhook for watching calls live in a terminal (LOG_FORMAT=line)."""

from __future__ import annotations

import atexit
import functools
import json
import logging
import logging.handlers
import os
import queue
import sys
import time

from events import ANSWER_RECORD, EVENT_RECORD, LEG_STATUSES, TOLD_WHY_RECORD, leg_parties, utc_timestamp

LOGGER_NAME = "voice"
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


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


def json_line(level: str, message: str, **fields) -> str:
    """One line of the JSON log format written by hand (serve.py's start-up notes): time, level, message, fields."""
    return _encode({"time": utc_timestamp(time.time()), "level": level, "message": message, **fields})


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


# ANSI colours of the line format, shown only on a terminal and never with NO_COLOR set (https://no-color.org).
_DIM, _RED, _GREEN, _YELLOW, _CYAN, _RESET = "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[36m", "\x1b[0m"
# An outcome's colour: green went through, cyan is under way, red did not happen; a warning is yellow.
_TONES = {True: _GREEN, None: _CYAN, False: _RED}
_COLOURS = {
    **{name: _TONES[status.went_through] for name, status in LEG_STATUSES.items()},
    **dict.fromkeys(("connect", "human"), _GREEN),
    **dict.fromkeys(("refused", "machine", "error", "critical"), _RED),
    "warning": _YELLOW,
}
# C0 and C1 control characters, written as escapes: a newline or an escape sequence sent in a webhook must not
# start a line of its own or recolour the terminal.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def use_colour(stream, no_color: bool) -> bool:
    """Whether the line format colours its output: only on a terminal, and never when NO_COLOR is set."""
    if no_color:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def short_id(value) -> str:
    """The start of a uuid, enough to tell calls apart by eye: 63f61863…, CON-f972836a…"""
    text = str(value)
    keep = 12 if text.startswith("CON-") else 8
    return text if len(text) <= keep + 1 else text[:keep] + "…"


def _one_line(text: str) -> str:
    # isprintable() is one pass in C; most lines have nothing to escape.
    return text if text.isprintable() else text.translate(_CONTROL_ESCAPES)


@functools.lru_cache(maxsize=8)
def _local_second(whole_seconds: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(whole_seconds))


def _exception_summary(exc_info) -> str:
    """An exception as one line: its type, message and the place it was raised."""
    kind, error, trace = exc_info
    if kind is None:
        return ""
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    where = f" at {os.path.basename(trace.tb_frame.f_code.co_filename)}:{trace.tb_lineno}" if trace else ""
    return f" ({kind.__name__}: {error}{where})"


class LineFormatter(logging.Formatter):
    """One line per record, for watching calls live: local time, what happened, its outcome (coloured on a
    terminal), who called whom, short ids. An answer decision, an event and a told-why each have a shape of their
    own; any other record is its level and message, an exception its type, message and place, not its traceback.
    """

    def __init__(self, colour: bool = False):
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        kind = fields.get("record")
        if kind == ANSWER_RECORD:
            return self._answer(record, fields)
        if kind == EVENT_RECORD:
            return self._event(record, fields)
        if kind == TOLD_WHY_RECORD:
            return self._told(record, fields)
        message = record.getMessage()
        if record.exc_info:
            message += _exception_summary(record.exc_info)
        return f"{self._time(record)} {self._paint(record.levelname.lower(), 8)} {_one_line(message)}"

    def _answer(self, record: logging.LogRecord, fields: dict) -> str:
        caller, callee, requested = fields.get("caller"), fields.get("callee"), fields.get("requested")
        if fields["connected"]:
            outcome = "connect"
            rest = f"{caller} -> {callee}"
            if requested and requested != callee and fields.get("shape") != "outbound":
                rest += f" (a call to {requested})"
        else:
            outcome, rest = "refused", f"{caller} -> {requested or '?'}"
        if fields.get("conversation_uuid"):
            rest += f"  {short_id(fields['conversation_uuid'])}"
        if outcome == "refused":
            rest += f"  {fields.get('reason') or ''}"
        return f"{self._time(record)} {fields['route']:8} {self._paint(outcome, 10)} {_one_line(rest)}"

    def _event(self, record: logging.LogRecord, fields: dict) -> str:
        payload = fields.get("payload")
        kind = _one_line(str(fields["event"]))
        if not isinstance(payload, dict):
            return f"{self._time(record)} event    {self._paint(kind, 10)} a repeated delivery, already stored"
        leg = fields.get("leg")
        rest = f"leg {short_id(leg)}" if leg else "no leg"
        if payload.get("direction"):
            rest += f" {payload['direction']}"
        caller, callee = leg_parties(payload.get("direction"), payload.get("from"), payload.get("to"))
        if caller or callee:
            rest += f" {caller or '?'} -> {callee or '?'}"
        if fields.get("conversation_uuid"):
            rest += f"  {short_id(fields['conversation_uuid'])}"
        if payload.get("duration") not in (None, ""):
            rest += f"  {payload['duration']} s"
        if payload.get("price") not in (None, ""):
            rest += f"  price {payload['price']}"
        detail = payload.get("detail") or payload.get("reason")
        if detail:
            rest += f"  ({detail})"
        return f"{self._time(record)} event    {self._paint(kind, 10)} {_one_line(rest)}"

    def _told(self, record: logging.LogRecord, fields: dict) -> str:
        # The reason reads "busy (busy): told the caller: ..."; its outcome goes in the outcome column.
        outcome, _, told = str(fields.get("reason") or "").partition(": ")
        rest = told + (" (a repeated delivery)" if fields.get("repeated") else "")
        if fields.get("leg"):
            rest += f"  leg {short_id(fields['leg'])}"
        if fields.get("conversation_uuid"):
            rest += f"  {short_id(fields['conversation_uuid'])}"
        return f"{self._time(record)} told     {self._paint(_one_line(outcome), 10)} {_one_line(rest)}"

    def _time(self, record: logging.LogRecord) -> str:
        stamp = _local_second(int(record.created))
        return f"{_DIM}{stamp}{_RESET}" if self.colour else stamp

    def _paint(self, word: str, width: int) -> str:
        padded = f"{word:<{width}}"
        colour = self.colour and _COLOURS.get(word.partition(" ")[0])
        return f"{colour}{padded}{_RESET}" if colour else padded


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


def configure_logging(log_format: str, no_color: bool = False, stream=None) -> logging.Logger:
    """Send the server's log (the `voice` logger) to standard output (or `stream`) in the chosen format; the line
    format is coloured when it goes to a terminal, unless `no_color` (NO_COLOR is set).

    Requests only queue their records; one thread writes them, so no request waits on the terminal
    or on another request's write.
    """
    if stream is not None:
        _output.setStream(stream)
    if log_format == "json":
        _output.setFormatter(JsonFormatter())
    elif log_format == "line":
        _output.setFormatter(LineFormatter(colour=use_colour(_output.stream, no_color)))
    else:
        _output.setFormatter(PrettyFormatter())
    # No format shows the thread or process: skip looking them up for every record
    # (the logging documentation's "Optimization" section lists these switches).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger(LOGGER_NAME)
    # No format shows where a record was logged from: skip walking the stack for it on every call.
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
