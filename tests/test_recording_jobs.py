"""The recordings job's parts without HTTP: the retry schedule, Retry-After, byte ranges, names in the store, the row
a recording's webhook makes, the lease that gives each job to one process, and retention (file first, then row)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from email.utils import formatdate

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, select

from calllog.recordings import RUNNER, STORED, Recordings
from calllog.rows import EventRow, recording_row
from calllog.schema import Database, conversations, recordings
from config import Settings
from events import utc_timestamp
from outbound.recording_store import FolderStore, byte_range, file_name
from outbound.recordings import RecordingFetcher
from outbound.retries import LONGEST_RETRY_SECONDS, retry_after_seconds, retry_delay


@pytest.mark.parametrize(
    "attempt, low, high", [(1, 0.5, 1), (2, 1, 2), (5, 8, 16), (12, 1024, 2048), (13, 1800, 3600), (40, 1800, 3600)]
)
def test_retries_double_from_a_second_up_to_an_hour_each_drawn_in_its_upper_half(attempt, low, high):
    high = min(high, LONGEST_RETRY_SECONDS)
    assert retry_delay(attempt, draw=lambda: 0.0) == pytest.approx(low)
    assert retry_delay(attempt, draw=lambda: 1.0) == pytest.approx(high)


def test_a_retry_is_never_sooner_than_retry_after_and_never_beyond_an_hour():
    assert retry_delay(1, retry_after=20, draw=lambda: 1.0) == 20
    assert retry_delay(1, retry_after=10**9, draw=lambda: 1.0) == LONGEST_RETRY_SECONDS


def test_retry_after_is_read_as_seconds_or_an_http_date():
    now = time.time()
    assert retry_after_seconds("7", now) == 7
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1.5)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0
    for unreadable in (None, "", "soon", "-5"):
        assert retry_after_seconds(unreadable, now) is None


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=900-5000", (900, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("items=0-5", None),
    ],
)
def test_a_range_header_is_one_inclusive_range_clipped_to_the_file(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=500-400", "bytes=-0"])
def test_a_range_past_the_end_is_refused(header):
    with pytest.raises(ValueError):
        byte_range(header, 1000)


def test_a_recording_is_named_by_its_uuid_unless_that_is_not_a_plain_name():
    assert file_name("aaaa-bbbb", "mp3") == "aaaa-bbbb.mp3"
    for odd in ("../../etc/passwd", "a/b", ".hidden", "x" * 300, "spaces here"):
        name = file_name(odd, "wav")
        assert "/" not in name and not name.startswith(".") and len(name) == 64 + 4, name


def event(kind: str, payload: dict, problem: str | None = None) -> EventRow:
    return EventRow("key-1", "CON-1", None, kind, "t", "2026-12-07T10:00:00.000Z", True, json.dumps(payload), problem)


def test_only_a_readable_recordings_webhook_makes_a_download_job():
    fields = {
        "recording_url": "https://api.nexmo.com/v1/files/x",
        "recording_uuid": "rec-1",
        "size": 12,
        "start_time": "s",
    }
    row = recording_row(event("record", fields), 5.0)
    assert row[:4] == ("rec-1", "CON-1", "https://api.nexmo.com/v1/files/x", 12) and row[-3:] == ("waiting", 0, 5.0)
    assert recording_row(event("completed", fields), 5.0) is None
    assert recording_row(event("record", {"recording_uuid": "rec-1"}), 5.0) is None
    assert recording_row(event("record", fields, problem="unreadable"), 5.0) is None
    assert recording_row(event("record", {**fields, "size": True}), 5.0)[3] is None
    assert recording_row(event("record", {**fields, "recording_uuid": None}), 5.0)[0] == "key-1"


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'calls.db'}")
    database.ensure_schema()
    yield database
    database.close()


def add_recording(database, uuid: str, conversation: str | None, received_at: str, **values) -> None:
    with database.connect(writing=True) as connection:
        if conversation:
            connection.execute(
                insert(conversations).values(
                    conversation_uuid=conversation, started_at=received_at, updated_at=received_at
                )
            )
        row = {
            "recording_uuid": uuid,
            "conversation_uuid": conversation,
            "recording_url": "https://api.nexmo.com/v1/files/x",
            "received_at": received_at,
            "status": "waiting",
            "attempts": 0,
            "next_attempt_at": 0.0,
            **values,
        }
        connection.execute(insert(recordings).values(**row))


def test_a_due_recording_is_taken_by_one_runner_until_its_lease_ends_or_its_runner_is_gone(database):
    add_recording(database, "rec-1", "CON-1", "2026-12-07T10:00:00.000Z")
    jobs = Recordings(database)
    now = time.time()
    taken = jobs.take_due(now, 60, runner="host:1")
    assert taken.recording_uuid == "rec-1" and taken.attempts == 1
    assert jobs.take_due(now, 60, runner="host:2") is None
    assert jobs.take_due(now + 61, 60, runner="host:2").attempts == 2  # the first lease ran out
    # A runner's attempt is ended by that runner only.
    jobs.finish("rec-1", STORED, runner="host:1", location="nowhere")
    assert jobs.get("rec-1").status == "waiting"
    # A runner on this machine that is gone frees what it held at once.
    mine = RUNNER.rsplit(":", 1)[0]
    jobs.finish("rec-1", "waiting", runner="host:2", next_attempt_at=0.0)
    assert jobs.take_due(now, 600, runner=f"{mine}:999999") is not None
    assert jobs.take_due(now, 600) is None
    assert jobs.release_leases_of_the_dead(alive=lambda pid: pid != 999999) == 1
    assert jobs.take_due(now, 600).attempts == 4


def test_retention_removes_the_file_first_then_the_row(database, tmp_path):
    store = FolderStore(str(tmp_path / "kept"))
    store.folder.mkdir()
    now = time.time()
    old = utc_timestamp(now - 7200)
    fresh = utc_timestamp(now - 60)
    for uuid, conversation, received in (("gone", None, fresh), ("old", "CON-old", old), ("fresh", "CON-fresh", fresh)):
        path = store.folder / f"{uuid}.mp3"
        path.write_bytes(b"audio")
        add_recording(database, uuid, conversation, received, status="stored", location=str(path))
    # The call of "gone" was removed by CALL_LOG_RETENTION: its recording has a conversation that is no longer there.
    with database.connect(writing=True) as connection:
        connection.execute(
            recordings.update().where(recordings.c.recording_uuid == "gone").values(conversation_uuid="CON-x")
        )
    settings = Settings(recording_retention=timedelta(hours=1))
    fetcher = RecordingFetcher(settings, Recordings(database), store, CollectorRegistry(), threading.Event())
    fetcher.prune(now)
    with database.connect() as connection:
        left = sorted(connection.execute(select(recordings.c.recording_uuid)).scalars())
    assert left == ["fresh"]
    assert sorted(path.name for path in store.folder.iterdir()) == ["fresh.mp3"]
    # Without RECORDING_RETENTION a recording stays as long as its call.
    add_recording(database, "kept", "CON-kept", old, status="stored")
    RecordingFetcher(Settings(), Recordings(database), store, CollectorRegistry(), threading.Event()).prune(now)
    assert Recordings(database).get("kept") is not None
