"""The call log page's player (#27), in Chromium: a stored recording plays, seeks (the audio route serves byte
ranges), goes on playing while the page refreshes, is offered for download, and is refused without the token; a
recording that cannot be stored shows as at risk."""

from __future__ import annotations

import io
import math
import struct
import uuid
import wave
from pathlib import Path

import pytest
import requests

from support.browser import CHROMIUM_ARGS, chromium_path
from support.production import CALL_LOG_TOKEN, running_server
from support.recordings import post_signed, recording_settings, wait_for, webhook

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
WAIT_MS = 20_000
SECONDS = 4


def tone(seconds: int = SECONDS, rate: int = 8000) -> bytes:
    """A WAV file: a 440 Hz tone, `seconds` long, that any browser plays."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * index / rate))) for index in range(seconds * rate)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(frames)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory, media, certificate, private_key_file):
    base = tmp_path_factory.mktemp("page")
    settings = recording_settings(
        media, certificate, private_key_file, RECORDINGS_URL=str(base / "kept"), RECORDING_ALERT_AFTER="1s"
    )
    with running_server(base, f"sqlite:///{base / 'calls.db'}", workers=1, **settings) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    with playwright_api.sync_playwright() as playwright:
        # The test presses play itself, as a person would; no gesture to wait for.
        args = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{server.url}/calls?token={CALL_LOG_TOKEN}")
    yield page
    context.close()


def stored_tone(server, media) -> tuple[str, str, bytes]:
    """A recorded call whose recording (a WAV tone) is stored: (its recording's uuid, its conversation, the bytes)."""
    recording_uuid = f"rec-{uuid.uuid4()}.wav"  # the stand-in serves an id ending .wav as audio/wav
    data = tone()
    conversation = f"CON-{uuid.uuid4()}"
    url = media.add(recording_uuid, data)
    assert (
        post_signed(server.url, "/voice/recording", webhook(url, data, conversation, recording_uuid)).status_code == 204
    )
    wait_for(server.url, conversation, "stored")
    return recording_uuid, conversation, data


def opened_call(page, conversation):
    card = page.locator(f'details.call[data-conversation="{conversation}"]')
    expect(card).to_be_visible(timeout=WAIT_MS)
    card.locator("summary").click()
    return card


def test_a_stored_recording_plays_and_seeks_and_goes_on_playing_through_the_refresh(page, server, media):
    _, conversation, _ = stored_tone(server, media)
    card = opened_call(page, conversation)
    expect(card.locator(".badge.recorded")).to_have_text("recorded")
    player = card.locator(".recording audio")
    expect(player).to_have_count(1, timeout=WAIT_MS)
    expect(card.locator(".recording .badge")).to_have_text("stored")
    player.evaluate("audio => audio.play()")
    page.wait_for_function(
        "audio => audio.currentTime > 0.3 && !audio.paused", arg=player.element_handle(), timeout=WAIT_MS
    )
    duration = player.evaluate("audio => audio.duration")
    assert abs(duration - SECONDS) < 0.2, duration
    # Seeking needs the server's byte ranges: without them a browser can only play from the start.
    assert player.evaluate("audio => audio.seekable.length && audio.seekable.end(0)") >= SECONDS - 0.2
    player.evaluate("audio => { audio.currentTime = 3.0; }")
    page.wait_for_function("audio => audio.currentTime >= 3.0", arg=player.element_handle(), timeout=WAIT_MS)
    # The list refreshes every second; the player is the same element, still playing, a few refreshes later.
    handle = player.element_handle()
    player.evaluate("audio => { audio.currentTime = 0.5; audio.loop = true; }")
    page.wait_for_timeout(3000)
    assert handle.evaluate("audio => audio.isConnected && !audio.paused")


def test_the_download_link_gives_the_stored_file(page, server, media):
    recording_uuid, conversation, data = stored_tone(server, media)
    card = opened_call(page, conversation)
    link = card.locator(".recording a.download")
    expect(link).to_have_count(1, timeout=WAIT_MS)
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"{recording_uuid}.wav"
    assert Path(download.value.path()).read_bytes() == data


def test_without_the_token_the_recording_is_refused(browser, server, media):
    recording_uuid, _, _ = stored_tone(server, media)
    context = browser.new_context()
    try:
        response = context.new_page().goto(f"{server.url}/api/recordings/{recording_uuid}/audio")
        assert response.status == 401
    finally:
        context.close()
    assert (
        requests.get(
            f"{server.url}/api/recordings/{recording_uuid}/audio?token={CALL_LOG_TOKEN}", timeout=10
        ).status_code
        == 401
    )


def test_a_recording_that_cannot_be_stored_shows_as_at_risk_with_the_reason(page, server, media):
    recording_uuid = f"rec-{uuid.uuid4()}"
    conversation = f"CON-{uuid.uuid4()}"
    data = b"\0" * 1000
    url = media.add(recording_uuid, data)
    media.fail(recording_uuid, "500", times=10_000)
    post_signed(server.url, "/voice/recording", webhook(url, data, conversation, recording_uuid))
    card = opened_call(page, conversation)
    badge = card.locator(".recording .badge")
    expect(badge).to_have_text("at risk", timeout=WAIT_MS)
    expect(card.locator(".recording .fact.problem")).to_contain_text("answered 500")
    assert card.locator(".recording audio").count() == 0
