"""Calls in progress for the call-control tests: a server started with CALL_CONTROL=on against Voice API stand-ins,
and a call put in its call log as Vonage would (its answer request with a region_url, then its leg's events)."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import requests

from support import keys
from support.production import wait_until
from support.servers import run_server

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
TOKEN = "live-call-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def call_control_settings(folder: Path, certificate, regions, **settings) -> dict:
    """The variables of a server that acts on calls through the stand-ins `regions` (the first is VONAGE_API_HOST)."""
    key_file = folder / "private.key"
    key_file.write_bytes(keys.pkcs8())
    return {
        "CALL_CONTROL": "on",
        "VONAGE_APPLICATION_ID": APPLICATION_ID,
        "VONAGE_PRIVATE_KEY": str(key_file),
        "VONAGE_TRUSTED_HOSTS": ",".join(region.host for region in regions),
        "VONAGE_API_HOST": regions[0].host,
        "REQUESTS_CA_BUNDLE": str(certificate[0]),
        "NO_PROXY": "127.0.0.1,localhost",
        "CALL_LOG_TOKEN": TOKEN,
        "DATABASE_URL": f"sqlite:///{folder / 'calls.db'}",
        "CALLABLE_USERS": "Bob",
        **settings,
    }


@contextlib.contextmanager
def call_control_server(folder: Path, certificate, regions, **settings):
    """serve.py, as `make run` starts it, with CALL_CONTROL=on; yields its base URL (`.log`: the file of its output)."""
    with run_server(folder / "server.log", **call_control_settings(folder, certificate, regions, **settings)) as url:
        url.log = folder / "server.log"
        yield url


def event(leg: str, conversation: str, status: str, **extra) -> dict:
    return {
        "from": None,
        "to": "Alice",
        "uuid": leg,
        "conversation_uuid": conversation,
        "status": status,
        "direction": "inbound",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        **extra,
    }


def start_call(url: str, region_url: str | None, to: str = "447700900000") -> tuple[str, str]:
    """An app user's call, answered and in progress, whose answer request named `region_url`: (leg, conversation)."""
    leg, conversation = str(uuid.uuid4()), f"CON-{uuid.uuid4()}"
    query = {"from_user": "Alice", "to": to, "uuid": leg, "conversation_uuid": conversation}
    if region_url:
        query["region_url"] = region_url
    assert requests.get(f"{url}/voice/answer", params=query, timeout=10).status_code == 200
    for status in ("started", "ringing", "answered"):
        posted = requests.post(f"{url}/voice/event", json=event(leg, conversation, status), timeout=10)
        assert posted.status_code == 204, posted.text
    # The answer decision is sent to the writer in the next batch (within about 100 ms).
    wait_until(lambda: call(url, conversation)["answers"], 10, "the answer decision was not stored")
    return leg, conversation


def end_call(url: str, leg: str, conversation: str) -> None:
    """The leg's completed event, as Vonage posts it once the leg is hung up."""
    posted = requests.post(f"{url}/voice/event", json=event(leg, conversation, "completed", duration="3"), timeout=10)
    assert posted.status_code == 204, posted.text


def call(url: str, conversation: str) -> dict:
    return requests.get(f"{url}/api/calls/{conversation}", headers=BEARER, timeout=10).json()


def act(url: str, leg: str, headers: dict | None = None, **body) -> requests.Response:
    return requests.post(f"{url}/api/calls/{leg}/actions", json=body, headers=headers or BEARER, timeout=30)
