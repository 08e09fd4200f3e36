"""Recordings for the tests: the settings of a server that records calls and fetches from the media stand-in
(support.media_standin), a recording's webhook and its signed delivery, and waiting for a recording's state."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from urllib.parse import urlencode

import requests

from edge.signatures import sign_webhook
from support.production import CALL_LOG_TOKEN, SECRET, wait_until

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
AUTH = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}
STORED_WITHIN = 60  # seconds: the first retries come within seconds


def audio(seed: str, size: int = 48_000) -> bytes:
    """`size` bytes of a recording, different for every seed."""
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def recording_settings(media, certificate, private_key_file, **extra) -> dict:
    """What a server that records calls and fetches from the stand-in runs with."""
    return {
        "RECORD_CALLS": "on",
        "VONAGE_APPLICATION_ID": APPLICATION_ID,
        "VONAGE_PRIVATE_KEY": str(private_key_file),
        "VONAGE_TRUSTED_HOSTS": media.host,
        "REQUESTS_CA_BUNDLE": str(certificate[0]),
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }


def webhook(recording_url: str, data: bytes | None, conversation: str, recording_uuid: str, **extra) -> dict:
    """A recording's webhook as Vonage sends it."""
    payload = {
        "start_time": "2026-12-07T10:00:00Z",
        "end_time": "2026-12-07T10:01:05Z",
        "recording_url": recording_url,
        "recording_uuid": recording_uuid,
        "conversation_uuid": conversation,
        "timestamp": "2026-12-07T10:01:06.120Z",
        **extra,
    }
    if data is not None:
        payload["size"] = len(data)
    return payload


def post_signed(url: str, path: str, payload: dict) -> requests.Response:
    body = json.dumps(payload).encode()
    authorization = sign_webhook(SECRET, "POST", body, [], time.time())
    headers = {"Content-Type": "application/json", "Authorization": authorization}
    return requests.post(f"{url}{path}", data=body, headers=headers, timeout=10)


def answer(url: str, to: str, conversation: str) -> list[dict]:
    pairs = [("to", to), ("from_user", "Alice"), ("uuid", f"in-{conversation}"), ("conversation_uuid", conversation)]
    authorization = sign_webhook(SECRET, "GET", b"", pairs, time.time())
    response = requests.get(
        f"{url}/voice/answer?{urlencode(pairs)}", headers={"Authorization": authorization}, timeout=10
    )
    assert response.status_code == 200
    return response.json()


def recordings_of(url: str, conversation: str) -> list[dict]:
    response = requests.get(f"{url}/api/calls/{conversation}", headers=AUTH, timeout=10)
    return response.json().get("recordings", []) if response.status_code == 200 else []


def wait_for(url: str, conversation: str, status: str, seconds: float = STORED_WITHIN) -> dict:
    """The conversation's one recording once it reaches `status`."""
    found: list[dict] = []

    def reached() -> bool:
        found[:] = recordings_of(url, conversation)
        return len(found) == 1 and found[0]["status"] == status

    try:
        wait_until(reached, seconds, f"the recording {status}")
    except AssertionError as error:
        raise AssertionError(f"{error}; it is {found}") from None
    return found[0]


def new_recording(media, size: int = 48_000) -> tuple[str, str, bytes, str]:
    """A recording the stand-in serves: (its uuid, its conversation, its bytes, its URL)."""
    recording_uuid = str(uuid.uuid4())
    data = audio(recording_uuid, size)
    return recording_uuid, f"CON-{recording_uuid}", data, media.add(recording_uuid, data)
