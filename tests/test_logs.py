"""The log: written by one thread that survives any record, never blocks a request, and shows tracebacks."""

import io
import json
import logging
import re
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, SEED_EVENTS, load_fixture
from runtime import logs

CON = "CON-f972836a-550f-45fa-956c-12a2ab5b7d22"


@pytest.fixture
def output():
    """The server's log output, captured: a UTF-8 stream that refuses what UTF-8 cannot hold, as a terminal does."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    logger = logs.configure_logging("pretty")
    previous = logs.output_handler().setStream(stream)
    yield logger, stream
    logs.output_handler().setStream(previous)


def written(stream, expected: str, seconds: float = 10) -> str:
    """What has been written so far, once it contains `expected` (the log thread writes on its own time)."""
    deadline = time.monotonic() + seconds
    while True:
        text = stream.buffer.getvalue().decode("utf-8")
        if expected in text or time.monotonic() > deadline:
            return text
        time.sleep(0.01)


class Unprintable:
    def __str__(self):
        raise RuntimeError("this object cannot be shown")


def test_a_record_that_cannot_be_formatted_does_not_stop_the_log(output, capsys):
    logger, stream = output
    logger.info("an event", extra={"payload": {"value": Unprintable()}})
    logger.info("the line after it")
    assert "the line after it" in written(stream, "the line after it")


def test_a_lone_surrogate_is_written_as_an_escape_without_a_logging_error(output, capsys):
    logger, stream = output
    logger.info("VOICE EVENT from x\udfff", extra={"payload": {"from": "x\udfff"}})
    logger.info("the line after it")
    text = written(stream, "the line after it")
    assert "VOICE EVENT from x\\udfff" in text
    assert '"from": "x\\udfff"' in text
    assert "Logging error" not in capsys.readouterr().err


def test_log_exception_shows_the_traceback_in_the_pretty_format(output):
    logger, stream = output
    try:
        raise ValueError("the cause")
    except ValueError:
        logger.exception("something failed")
    text = written(stream, "ValueError: the cause")
    assert "something failed" in text and "Traceback (most recent call last)" in text


def test_when_the_output_stalls_records_are_dropped_and_counted_not_queued_without_end(output):
    logger, stream = output
    (source,) = [handler for handler in logger.handlers if isinstance(handler, logs.RecordQueueHandler)]
    release = threading.Event()

    class StalledStream(io.StringIO):
        def write(self, text):
            release.wait(10)
            return stream.write(text)

        def flush(self):
            stream.flush()

    logs.output_handler().setStream(StalledStream())
    limit, source.limit = source.limit, 20
    try:
        for number in range(500):
            logger.info("record %d", number)
        assert source.queue.qsize() <= 21  # the log thread may hold one it has taken
    finally:
        source.limit = limit
        release.set()
    logger.info("after the stall")
    text = written(stream, "log records were dropped")
    assert "log records were dropped: the output could not keep up" in text


def test_a_flat_payload_block_reads_exactly_as_json_indented_by_two():
    payload = {"from": "Zoë", "to": "447700900000", "duration": "15", "price": 0.5, "headers": {}, "x": None}
    assert logs.payload_block(payload) == json.dumps(payload, indent=2, ensure_ascii=False)


def test_a_nested_payload_block_is_still_the_payload():
    payload = {"custom_data": {"to": "447700900000", "list": [1, 2]}, "status": "started"}
    assert json.loads(logs.payload_block(payload)) == payload


# LOG_FORMAT=line: one line per webhook, for watching calls live.


def line_log(client, caplog, send) -> list[str]:
    """The lines LOG_FORMAT=line writes for what `send(client)` makes the server log (no colour)."""
    with caplog.at_level(logging.INFO, logger="voice"):
        send(client)
    return [logs.LineFormatter().format(record) for record in caplog.records]


def test_line_format_shows_an_answer_decision_with_who_called_whom_and_the_conversation(client, caplog):
    (line,) = line_log(
        client,
        caplog,
        lambda c: c.get(
            "/voice/answer", query_string={"to": "447700900000", "from_user": "Alice", "conversation_uuid": CON}
        ),
    )
    assert re.fullmatch(r"\d\d:\d\d:\d\d answer   connect    Alice -> 447700900000  CON-f972836a…", line)


def test_line_format_shows_a_refused_answer_with_its_reason(client, caplog):
    (line,) = line_log(client, caplog, lambda c: c.get("/voice/answer", query_string={"to": "+449098790000"}))
    assert line.endswith(
        "answer   refused    unknown caller -> +449098790000  449098790000 is a PREMIUM_RATE number, "
        "blocked by BLOCKED_NUMBER_TYPES"
    )


def test_line_format_shows_an_event_with_its_leg_direction_numbers_duration_and_price(client, caplog):
    payload = load_fixture(SEED_EVENTS[3])
    (line,) = line_log(client, caplog, lambda c: c.post("/voice/event", json=payload))
    assert line.endswith(
        "event    completed  leg 8aa86e22… outbound ? -> 447700900000  CON-1a28b1f8…  5 s  price 0.00833333"
    ), line


def test_line_format_shows_an_app_users_own_leg_as_the_user_calling(client, caplog):
    """The app user's leg comes with no `from` and the user's name in `to`: it reads as Alice calling, not as
    someone calling Alice."""
    payload = load_fixture(SEED_EVENTS[0])
    (line,) = line_log(client, caplog, lambda c: c.post("/voice/event", json=payload))
    assert line.endswith("event    started    leg 2da93da3… inbound Alice -> ?  CON-1a28b1f8…"), line


def test_line_format_shows_a_transfer_event_under_the_conversation_it_left(client, caplog):
    transfer = {
        "uuid": "leg-moved",
        "conversation_uuid_from": CON,
        "conversation_uuid_to": "CON-other",
        "type": "transfer",
    }
    (line,) = line_log(client, caplog, lambda c: c.post("/voice/event", json={**transfer, "timestamp": "t1"}))
    assert line.endswith("event    transfer   leg leg-moved  CON-f972836a…"), line


def test_line_format_marks_a_repeated_told_why(client, caplog):
    busy = {"to": "447700900000", "uuid": "leg-busy", "conversation_uuid": CON, "status": "busy", "detail": "busy"}
    lines = line_log(
        client, caplog, lambda c: [c.post("/voice/event/connect", json={**busy, "timestamp": "t1"}) for _ in range(2)]
    )
    assert (
        lines[-1].startswith("told", 9) and "Please try again later. (a repeated delivery)  leg leg-busy" in lines[-1]
    )


def test_line_format_shows_a_told_why_with_the_outcome_and_what_the_caller_heard(client, caplog):
    busy = {"to": "447700900000", "uuid": "leg-busy", "conversation_uuid": CON, "status": "busy", "detail": "busy"}
    lines = line_log(client, caplog, lambda c: c.post("/voice/event/connect", json={**busy, "timestamp": "t1"}))
    assert lines[-1].endswith(
        "told     busy (busy) told the caller: The number you called is busy. Please try again later.  "
        "leg leg-busy  CON-f972836a…"
    )


def test_line_format_writes_a_webhook_newline_or_escape_code_as_an_escape_not_a_line_or_colour(client, caplog):
    forged = {"status": "started\n12:00:00 answer   connect  forged", "uuid": "leg\x1b[31m", "timestamp": "t"}
    (line,) = line_log(client, caplog, lambda c: c.post("/voice/event", json=forged))
    assert "\n" not in line and "\x1b" not in line
    assert "started\\x0a12:00:00" in line and "leg\\x1b[31m" in line


def test_line_format_writes_an_exception_as_one_line_with_its_type_message_and_place():
    try:
        raise ValueError("the cause")
    except ValueError:
        record = logging.makeLogRecord({"msg": "unexpected error on /voice/answer", "exc_info": sys.exc_info()})
    line = logs.LineFormatter().format(record)
    assert "\n" not in line
    assert re.search(r"unexpected error on /voice/answer \(ValueError: the cause at test_logs\.py:\d+\)$", line)


def test_line_format_takes_a_records_shape_from_its_record_field_not_from_which_fields_it_has():
    """A record that merely carries `connected` or `event` among its fields is an ordinary line."""
    record = logging.makeLogRecord({"msg": "writer restarted", "levelname": "INFO", "connected": True, "event": "x"})
    assert logs.LineFormatter().format(record).endswith("info     writer restarted")


def test_line_format_colours_the_outcome_only_when_asked():
    record = logging.makeLogRecord({"msg": "a refusal", "levelname": "WARNING"})
    assert "\x1b[" not in logs.LineFormatter(colour=False).format(record)
    assert "\x1b[33mwarning" in logs.LineFormatter(colour=True).format(record)


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    "stream, no_color, coloured",
    [(Terminal(), False, True), (Terminal(), True, False), (io.StringIO(), False, False)],
    ids=["terminal", "terminal-with-NO_COLOR", "pipe-or-file"],
)
def test_line_format_is_coloured_only_on_a_terminal_without_no_color(stream, no_color, coloured):
    previous = logs.output_handler().setStream(stream)
    try:
        logs.configure_logging("line", no_color=no_color)
        assert logs.output_handler().formatter.colour is coloured
    finally:
        logs.output_handler().setStream(previous)
        logs.configure_logging("pretty")


def test_line_format_writes_one_line_per_webhook_and_no_colour_into_a_pipe(tmp_path):
    script = (
        "from app import create_app\n"
        f"app = create_app({{'DATABASE_URL': 'sqlite:///{tmp_path}/calls.db', 'LOG_FORMAT': 'line'}})\n"
        "client = app.test_client()\n"
        "client.get('/voice/answer', query_string={'to': '447700900000', 'from_user': 'Alice'})\n"
        "for n in range(3):\n"
        "    client.post('/voice/event', json={'status': 'started', 'uuid': f'leg-{n}', 'timestamp': str(n)})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line[9:24] for line in lines] == ["answer   connec", *["event    starte"] * 3], lines
    assert "\x1b" not in result.stdout
