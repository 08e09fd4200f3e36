"""Recordings (#27) through the real server (serve.py, as `make run` starts it), against a stand-in of Vonage's media
host over HTTPS (support.media_standin) that serves a recording only to the application's JWT and fails on demand:
every recording whose webhook is acknowledged ends up stored, byte for byte, once, whatever fails on the way; one on
any other host is refused and nothing is sent there."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from support.media_standin import Catcher
from support.pg import database_url_for
from support.production import SECRET, running_server, start_server, stop_group, wait_until
from support.recordings import (
    AUTH,
    answer,
    new_recording,
    post_signed,
    recording_settings,
    recordings_of,
    wait_for,
    webhook,
)
from support.servers import CHILD_FOLDER, run_env


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="module")
def server(tmp_path_factory, media, certificate, private_key_file, folder):
    """One server for the module: SQLite, recordings kept in `folder`."""
    base = tmp_path_factory.mktemp("server")
    settings = recording_settings(
        media, certificate, private_key_file, RECORDINGS_URL=str(folder), RECORDING_ALERT_AFTER="2s"
    )
    with running_server(base, f"sqlite:///{base / 'calls.db'}", workers=1, **settings) as running:
        yield running


def test_a_connected_call_is_recorded_whole_before_its_connect_and_a_refused_one_is_not(server):
    ncco = answer(server.url, "447700900000", "CON-recorded")
    assert [action["action"] for action in ncco] == ["talk", "record", "connect"]
    record = ncco[1]
    assert record["split"] == "conversation" and record["channels"] == 2 and record["format"] == "mp3"
    assert record["eventUrl"] == [f"{server.url}/voice/recording"]
    refused = answer(server.url, "12", "CON-refused")
    assert [action["action"] for action in refused] == ["talk"]


def test_a_recording_delivered_three_times_is_fetched_once_and_stored_byte_for_byte(server, media, folder):
    recording_uuid, conversation, data, url = new_recording(media)
    for _ in range(3):
        assert (
            post_signed(server.url, "/voice/recording", webhook(url, data, conversation, recording_uuid)).status_code
            == 204
        )
    stored = wait_for(server.url, conversation, "stored")
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["size"] == len(data) and stored["duration"] == 65 and stored["attempts"] == 1
    assert Path(stored["location"]) == folder / f"{recording_uuid}.mp3"
    assert Path(stored["location"]).read_bytes() == data
    assert [request.answer for request in media.requests_for(recording_uuid)] == ["200"]
    assert not list((folder / ".incoming").glob("*")), "a half-written download was left behind"


@pytest.mark.parametrize(
    "kind, options",
    [("500", {}), ("503", {"retry_after": 1}), ("429", {"retry_after": 2}), ("cut", {}), ("short", {}), ("401", {})],
)
def test_a_failed_download_is_tried_again_until_the_stored_bytes_are_the_served_ones(server, media, kind, options):
    recording_uuid, conversation, data, url = new_recording(media)
    media.fail(recording_uuid, kind, **options)
    assert (
        post_signed(server.url, "/voice/recording", webhook(url, data, conversation, recording_uuid)).status_code == 204
    )
    stored = wait_for(server.url, conversation, "stored")
    assert Path(stored["location"]).read_bytes() == data
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    answers = [request.answer for request in media.requests_for(recording_uuid)]
    assert answers == [kind, "200"] and stored["attempts"] == 2
    if "retry_after" in options:
        first, second = media.requests_for(recording_uuid)
        assert second.at - first.at >= options["retry_after"], "Retry-After was not honoured"


def test_a_recording_on_another_host_is_refused_and_nothing_is_sent_there(server, certificate):
    with Catcher(certificate) as catcher:
        conversation, recording_uuid = "CON-elsewhere", str(uuid.uuid4())
        url = catcher.url(f"/v1/files/{recording_uuid}")
        assert (
            post_signed(
                server.url, "/voice/recording", webhook(url, b"x" * 10, conversation, recording_uuid)
            ).status_code
            == 204
        )
        refused = wait_for(server.url, conversation, "refused")
        assert catcher.host in refused["error"] and "not one of Vonage's API hosts" in refused["error"]
        assert catcher.requests == []


def test_a_redirect_to_another_host_is_refused_without_sending_it_the_jwt(server, media, certificate):
    recording_uuid, conversation, data, url = new_recording(media)
    with Catcher(certificate) as catcher:
        media.fail(recording_uuid, "redirect", location=catcher.url(f"/steal/{recording_uuid}"))
        assert (
            post_signed(server.url, "/voice/recording", webhook(url, data, conversation, recording_uuid)).status_code
            == 204
        )
        refused = wait_for(server.url, conversation, "refused")
        assert catcher.host in refused["error"]
        assert catcher.requests == [] and catcher.authorizations() == []
    assert [request.answer for request in media.requests_for(recording_uuid)] == ["redirect"]


def test_the_player_route_serves_byte_ranges_to_the_token_only(server, media):
    recording_uuid, conversation, data, url = new_recording(media)
    post_signed(server.url, "/voice/recording", webhook(url, data, conversation, recording_uuid))
    wait_for(server.url, conversation, "stored")
    route = f"{server.url}/api/recordings/{recording_uuid}/audio"
    whole = requests.get(route, headers=AUTH, timeout=10)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Content-Type"] == "audio/mpeg" and whole.headers["Accept-Ranges"] == "bytes"
    part = requests.get(route, headers={**AUTH, "Range": "bytes=1000-1999"}, timeout=10)
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    tail = requests.get(route, headers={**AUTH, "Range": "bytes=-10"}, timeout=10)
    assert tail.status_code == 206 and tail.content == data[-10:]
    past = requests.get(route, headers={**AUTH, "Range": f"bytes={len(data)}-"}, timeout=10)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"
    download = requests.get(f"{route}?download=1", headers=AUTH, timeout=10)
    assert download.headers["Content-Disposition"] == f'attachment; filename="{recording_uuid}.mp3"'
    refused = requests.get(route, timeout=10)
    assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["error"]
    unknown = requests.get(f"{server.url}/api/recordings/no-such/audio", headers=AUTH, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"] == "no recording no-such in the call log"


def metric(url: str, line_start: str) -> float:
    text = requests.get(f"{url}/metrics", headers=AUTH, timeout=10).text
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start + " ")]
    assert values, f"no {line_start} in /metrics"
    return float(values[0])


def flask_command(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = run_env(
        **{"DATABASE_URL": database_url, "FLASK_APP": "app", "NO_PROXY": "127.0.0.1,localhost", **env}
    )
    return subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=CHILD_FOLDER,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_recording_not_stored_in_time_and_a_recorded_call_whose_webhook_never_came_are_at_risk(server, media):
    recording_uuid, conversation, data, url = new_recording(media)
    media.fail(recording_uuid, "500", times=10_000)
    assert metric(server.url, 'voice_recordings_at_risk{reason="not_stored"}') == 0
    post_signed(server.url, "/voice/recording", webhook(url, data, conversation, recording_uuid))
    wait_until(lambda: metric(server.url, 'voice_recordings_at_risk{reason="not_stored"}') == 1, 30, "at risk")
    assert metric(server.url, "voice_recording_oldest_pending_seconds") >= 2
    assert metric(server.url, 'voice_recording_downloads_total{outcome="http_error"}') >= 1
    # A recorded call that ended, and whose recording's webhook has not come.
    missing = f"CON-missing-{uuid.uuid4()}"
    answer(server.url, "447700900000", missing)
    completed = {
        "uuid": f"in-{missing}",
        "conversation_uuid": missing,
        "status": "completed",
        "direction": "inbound",
        "timestamp": "2026-12-07T10:02:00.000Z",
    }
    assert post_signed(server.url, "/voice/event", completed).status_code == 204
    wait_until(lambda: metric(server.url, 'voice_recordings_at_risk{reason="webhook_missing"}') >= 1, 30, "missing")
    checks: list[subprocess.CompletedProcess] = []

    def listed_missing() -> bool:
        checks[:] = [flask_command(server.database_url, "recordings", "check", RECORDING_ALERT_AFTER="2s")]
        return f"webhook missing: call {missing} was recorded" in checks[0].stdout

    wait_until(listed_missing, 30, "flask recordings check listing the call")
    (check,) = checks
    assert check.returncode == 1, check.stderr
    assert f"not stored: recording {recording_uuid} of {conversation}" in check.stdout
    database = server.database_url
    listed = flask_command(database, "recordings", "--status", "waiting")
    assert recording_uuid in listed.stdout and "answered 500" in listed.stdout


def test_flask_recordings_fetch_stores_again_a_recording_whose_file_was_lost(
    tmp_path, media, certificate, private_key_file
):
    recording_uuid, conversation, data, url = new_recording(media)
    store = tmp_path / "kept"
    settings = recording_settings(media, certificate, private_key_file, RECORDINGS_URL=str(store))
    database = f"sqlite:///{tmp_path / 'calls.db'}"
    with running_server(tmp_path / "run", database, workers=1, **settings) as running:
        post_signed(running.url, "/voice/recording", webhook(url, data, conversation, recording_uuid))
        stored = wait_for(running.url, conversation, "stored")
    Path(stored["location"]).unlink()
    fetched = flask_command(database, "recordings", "fetch", recording_uuid, **settings)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.startswith(f"stored: recording {recording_uuid} at {store / (recording_uuid + '.mp3')}")
    assert Path(stored["location"]).read_bytes() == data
    unknown = flask_command(database, "recordings", "fetch", "no-such", **settings)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: no recording no-such in the call log; flask recordings lists them"


def test_killed_with_kill_9_during_a_download_the_recording_is_stored_once_after_a_restart(
    tmp_path, media, certificate, private_key_file
):
    recording_uuid, conversation, data, url = new_recording(media)
    media.fail(recording_uuid, "slow")
    store = tmp_path / "kept"
    settings = recording_settings(media, certificate, private_key_file, RECORDINGS_URL=str(store))
    database = f"sqlite:///{tmp_path / 'calls.db'}"
    first = start_server(tmp_path / "first", database, workers=1, **settings)
    try:
        assert (
            post_signed(first.url, "/voice/recording", webhook(url, data, conversation, recording_uuid)).status_code
            == 204
        )
        media.wait_for(recording_uuid, 1, timeout=30)  # the download has begun, and is held
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        stop_group(first.process)
    media.release(recording_uuid)
    with running_server(tmp_path / "second", database, workers=1, **settings) as second:
        stored = wait_for(second.url, conversation, "stored")
    assert Path(stored["location"]).read_bytes() == data
    assert sorted(path.name for path in store.iterdir() if path.is_file()) == [f"{recording_uuid}.mp3"]
    assert [request.answer for request in media.requests_for(recording_uuid)][-1] == "200"


def test_recordings_go_to_s3_and_wait_while_it_is_unavailable(tmp_path, media, certificate, private_key_file):
    from support.s3_server import S3Server

    recording_uuid, conversation, data, url = new_recording(media)
    with S3Server() as s3:
        s3.create_bucket("calls")
        settings = recording_settings(
            media,
            certificate,
            private_key_file,
            RECORDINGS_URL="s3://calls/recordings/",
            RECORDINGS_S3_ENDPOINT=s3.endpoint,
            **s3.aws_env(),
        )
        with running_server(tmp_path, f"sqlite:///{tmp_path / 'calls.db'}", workers=1, **settings) as running:
            with s3.unavailable():
                post_signed(running.url, "/voice/recording", webhook(url, data, conversation, recording_uuid))
                wait_until(
                    lambda: (recordings_of(running.url, conversation) or [{}])[0].get("attempts", 0) >= 2,
                    60,
                    "two tries",
                )
                (waiting,) = recordings_of(running.url, conversation)
                assert waiting["status"] == "waiting" and "cannot upload to s3://calls/recordings/" in waiting["error"]
            stored = wait_for(running.url, conversation, "stored")
            assert stored["location"] == f"s3://calls/recordings/{recording_uuid}.mp3"
            assert s3.objects("calls") == {f"recordings/{recording_uuid}.mp3": data}
            part = requests.get(
                f"{running.url}/api/recordings/{recording_uuid}/audio",
                headers={**AUTH, "Range": "bytes=5-9"},
                timeout=10,
            )
            assert part.status_code == 206 and part.content == data[5:10]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_servers_on_one_postgresql_database_fetch_each_recording_once(
    tmp_path, media, certificate, private_key_file, backend
):
    database = database_url_for(backend, tmp_path)
    store = tmp_path / "kept"
    settings = recording_settings(media, certificate, private_key_file, RECORDINGS_URL=str(store))
    made = [new_recording(media, 20_000) for _ in range(12)]
    with (
        running_server(tmp_path / "a", database, workers=1, **settings) as one,
        running_server(tmp_path / "b", database, workers=1, **settings) as two,
    ):
        for index, (recording_uuid, conversation, data, url) in enumerate(made):
            target = (one, two)[index % 2]
            assert (
                post_signed(
                    target.url, "/voice/recording", webhook(url, data, conversation, recording_uuid)
                ).status_code
                == 204
            )
        for _, conversation, data, _ in made:
            stored = wait_for(one.url, conversation, "stored")
            assert Path(stored["location"]).read_bytes() == data
    for recording_uuid, *_ in made:
        assert [request.answer for request in media.requests_for(recording_uuid)] == ["200"], recording_uuid


def test_flask_simulate_plays_a_recorded_call_whose_recording_is_then_stored(server, media):
    recording_uuid, _, data, url = new_recording(media)
    simulated = flask_command(
        "sqlite:////nonexistent-unused.db",
        "simulate",
        "--scenario",
        "recorded",
        "--url",
        server.url,
        "--recording-url",
        url,
        "--recording-size",
        str(len(data)),
        VONAGE_SIGNATURE_SECRET=SECRET,
    )
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert "record the conversation (mp3, 2 channels)" in simulated.stdout
    conversation = next(line.split()[-1] for line in simulated.stdout.splitlines() if "CON-" in line)
    conversation = conversation.strip("()")
    stored = wait_for(server.url, conversation, "stored")
    assert Path(stored["location"]).read_bytes() == data


def test_a_recording_once_stored_is_forwarded_as_its_own_type_after_its_webhook(
    tmp_path, media, certificate, private_key_file
):
    from support.forwarding import SECRET as FORWARD_SECRET
    from support.forwarding import receiving

    recording_uuid, conversation, data, url = new_recording(media)
    media.fail(recording_uuid, "500")  # stored on the second try: the message comes only once it is safe
    with receiving(tmp_path) as receiver:
        settings = recording_settings(
            media,
            certificate,
            private_key_file,
            RECORDINGS_URL=str(tmp_path / "kept"),
            FORWARD_URL=receiver.url,
            FORWARD_SECRET=FORWARD_SECRET,
        )
        with running_server(tmp_path, f"sqlite:///{tmp_path / 'calls.db'}", workers=1, **settings) as running:
            post_signed(running.url, "/voice/recording", webhook(url, data, conversation, recording_uuid))
            stored = wait_for(running.url, conversation, "stored")
            kinds = lambda: [request["type"] for request in receiver.requests()]  # noqa: E731
            wait_until(lambda: "call.recording.stored" in kinds(), 60, "the stored recording forwarded")
        got = receiver.requests()
    assert all(request["verified"] for request in got)
    assert sorted(kinds()) == ["call.event.completed", "call.recording.stored"]
    (message,) = [request for request in got if request["type"] == "call.recording.stored"]
    assert message["id"] == recording_uuid
    assert message["data"]["sha256"] == stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert message["data"]["status"] == "stored" and message["data"]["conversation_uuid"] == conversation
    assert message["data"]["location"] == stored["location"] and message["data"]["attempts"] == 2
