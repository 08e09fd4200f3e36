"""The log: written by one thread that survives any record, never blocks a request, and shows tracebacks."""

import io
import json
import threading
import time

import pytest

import logs


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
