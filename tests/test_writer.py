"""The call-log writer: workers' writes committed by one writer, and what happens when it is gone."""

import os
import signal
import socket
import threading
import time

import pytest
import requests
from prometheus_client import CollectorRegistry

from calllog import client as client_module
from calllog.client import WriterClient
from calllog.rows import event_row
from calllog.schema import StorageError
from calllog.writer import WriterThread
from conftest import CALL_LOG_TOKEN, SEED_EVENTS, answer_record, built_app, call_log_reader, load_fixture
from events import Payload, event_key
from runtime.metrics import Metrics
from support.servers import run_server
from vonage_helper.ncco_models import parse_ncco


@pytest.fixture
def writer_socket(tmp_path, database_url):
    """A writer serving on a Unix socket, in a thread of this process, over the test's database."""
    writer = WriterThread(database_url, str(tmp_path / "writer.sock"), Metrics(CollectorRegistry()))
    writer.start()
    yield writer.socket_path
    writer.stop()


@pytest.fixture
def remote(writer_socket):
    """A worker's side of the writer."""
    client = WriterClient(writer_socket)
    yield client
    client.close()


def eventually(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_remote_writer_commits_each_event_once(remote, database_url):
    event = load_fixture(SEED_EVENTS[0])
    assert remote.record_event(event_row(Payload(event), "2026-11-24T09:00:00.000Z", True)) is True
    assert remote.record_event(event_row(Payload(event), "2026-11-24T09:00:01.000Z", True)) is False
    with call_log_reader(database_url) as reader:
        assert reader.count_events() == 1


def test_writer_answers_each_of_many_concurrent_workers_with_its_own_outcome(remote, database_url):
    """Events from 16 connections at once share commits; each connection gets the reply for its own event."""
    payloads = [
        {
            "status": "started",
            "uuid": f"leg-{index}",
            "conversation_uuid": f"CON-{index // 2}",
            "timestamp": f"2026-11-24T09:00:00.{index:03d}Z",
        }
        for index in range(160)
    ]
    outcomes: dict[int, list[bool]] = {}

    def deliver(index: int) -> None:
        # Each event twice from the same thread: new, then a duplicate.
        outcomes[index] = [
            remote.record_event(event_row(Payload(payloads[index]), "2026-11-24T09:00:01.000Z", True)) for _ in range(2)
        ]

    def deliver_every_sixteenth(first: int) -> None:
        for index in range(first, 160, 16):
            deliver(index)

    threads = [threading.Thread(target=deliver_every_sixteenth, args=(first,)) for first in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {index: [True, False] for index in range(160)}
    with call_log_reader(database_url) as reader:
        assert reader.stored_event_keys([event_key(p) for p in payloads]) == {event_key(p) for p in payloads}
        assert reader.count_events() == 160


def test_an_unreadable_message_closes_only_its_own_connection(writer_socket, remote, database_url):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as garbage:
        garbage.connect(writer_socket)
        garbage.sendall(b"this is not json\n")
        garbage.settimeout(5)
        assert garbage.recv(100) == b""  # the writer closed it
    event = load_fixture(SEED_EVENTS[0])
    assert remote.record_event(event_row(Payload(event), "2026-11-24T09:00:00.000Z", True)) is True
    with call_log_reader(database_url) as reader:
        assert reader.count_events() == 1


def test_remote_writer_stores_answer_decisions_in_batches(remote, database_url):
    for index in range(25):
        remote.record_answer(answer_record(f"CON-{index}", "2026-11-24T09:00:00.000Z", verified=False))
    remote.flush()
    with call_log_reader(database_url) as reader:
        assert len(reader.list_calls(limit=100)[0]) == 25


def test_app_with_a_writer_answers_calls_and_stores_events(writer_socket, database_url):
    config = {"DATABASE_URL": database_url, "CALL_LOG_TOKEN": CALL_LOG_TOKEN}
    with built_app(config, writer_socket) as app:
        client = app.test_client()
        for path in SEED_EVENTS:
            assert client.post("/voice/event", json=load_fixture(path)).status_code == 204
        conversation = "CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77"
        parse_ncco(client.get(f"/voice/answer?to=447700900000&conversation_uuid={conversation}").get_json())
        call_log = app.extensions["call_log"]
        call_log.client.flush()
        assert call_log.reader.count_events() == 5
        assert call_log.reader.get_call(conversation)["answers"] != []


def test_without_its_writer_the_server_refuses_events_with_503_and_still_answers(tmp_path, database_url):
    with built_app({"DATABASE_URL": database_url}, str(tmp_path / "nobody.sock")) as app:
        client = app.test_client()
        response = client.post("/voice/event", json=load_fixture(SEED_EVENTS[0]))
        assert response.status_code == 503
        assert "writer is not running" in response.get_json()["error"]
        ncco = client.get("/voice/answer?to=447700900000").get_json()
    assert parse_ncco(ncco)[1].endpoint[0].number == "447700900000"


def test_remote_writer_raises_storage_error_when_the_writer_is_gone(tmp_path):
    client = WriterClient(str(tmp_path / "nobody.sock"))
    with pytest.raises(StorageError, match="not running"):
        client.record_event(event_row(Payload({"status": "started"}), "2026-11-24T09:00:00.000Z", False))
    client.close()


def writer_pids(server_pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    arguments = cmdline.read().split(b"\0")
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == server_pid and b"calllog.writer_process" in arguments:
                found.append(int(entry))
    return found


def test_make_run_restarts_a_writer_that_dies_and_loses_nothing_acknowledged(tmp_path):
    database = f"sqlite:///{tmp_path / 'calls.db'}"
    with run_server(DATABASE_URL=database, CALL_LOG_TOKEN=CALL_LOG_TOKEN, WORKERS="2") as url:
        (writer,) = writer_pids(url.pid)
        acknowledged = []

        def post(index):
            payload = {
                "status": "started",
                "uuid": f"leg-{index}",
                "conversation_uuid": f"CON-{index}",
                "timestamp": f"t{index}",
            }
            response = requests.post(f"{url}/voice/event", json=payload, timeout=10)
            if response.status_code == 204:
                acknowledged.append(payload)
            return response.status_code

        assert post(0) == 204
        os.kill(writer, signal.SIGKILL)
        statuses = [post(index) for index in range(1, 4)]
        assert set(statuses) <= {204, 503}
        eventually(lambda: post(len(acknowledged) + 100) == 204)
        assert writer_pids(url.pid) not in ([], [writer])
    # A 503'd event may have been committed just before the writer died: only the acknowledged are owed.
    with call_log_reader(database) as reader:
        stored = reader.stored_event_keys([event_key(payload) for payload in acknowledged])
    assert stored == {event_key(payload) for payload in acknowledged}


def test_a_writer_that_never_replies_fails_the_event_after_the_wait_limit(tmp_path, monkeypatch):
    """A writer stuck mid-commit must not hold a request thread forever: the event fails (503) after the limit."""
    monkeypatch.setattr(client_module, "WAIT_SECONDS", 0.3)
    path = str(tmp_path / "silent.sock")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen()
    client = WriterClient(path)
    outcome = []

    def record():
        try:
            client.record_event(
                event_row(Payload({"uuid": "leg-1", "status": "started"}), "2026-11-26T10:00:00.000Z", True)
            )
        except StorageError as error:
            outcome.append(error)

    started = time.monotonic()
    waiting = threading.Thread(target=record, daemon=True)
    waiting.start()
    waiting.join(5)
    try:
        assert not waiting.is_alive(), "the event still waits for the writer after 5 s"
        assert "did not answer" in str(outcome[0])
        assert 0.25 < time.monotonic() - started < 3
    finally:
        silent.close()
