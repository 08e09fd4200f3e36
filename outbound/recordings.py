"""The recordings job: each recording whose webhook is stored is fetched from Vonage, checked and kept in the store
(RECORDINGS_URL), retried until it is, for as long as Vonage keeps it (docs/recordings.md has its whole life).

A recording is fetched only from Vonage's own API hosts (policy.vonage_url_refusal, with VONAGE_TRUSTED_HOSTS): the
request carries the application's JWT, which a URL on any other host would be handed, so such a recording is refused
and recorded as refused, and nothing is sent there. A redirect is followed only to a host that passes the same test.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from calllog.deliveries import DELIVERY_COLUMNS, RECORDING_TYPE, delivery_rows, forwarding
from calllog.recordings import FAILED, REFUSED, STORED, Recording, Recordings
from calllog.rows import WAITING
from calllog.schema import StorageError
from config import Settings
from events import epoch_seconds, utc_timestamp
from outbound.recording_store import CONTENT_TYPES, StoreError, file_name
from outbound.retries import retry_after_seconds, retry_delay
from policy import vonage_url_refusal
from runtime.logs import LOGGER_NAME
from runtime.metrics import counted_by
from runtime.stop_signals import process_alive

log = logging.getLogger(f"{LOGGER_NAME}.recordings")

LEASE_SECONDS = 60.0  # a download holds its recording this long, renewed every RENEW_SECONDS while it runs
RENEW_SECONDS = 20.0
# Vonage keeps a recording for 30 days; one not stored within 7 is kept as failed (flask recordings fetch tries again).
GIVE_UP_AFTER = timedelta(days=7)
CONNECT_SECONDS, READ_SECONDS = 10, 60
TOKEN_LIFE = timedelta(minutes=5)
MOST_REDIRECTS = 3
PRUNE_SECONDS = 60
IDLE_SECONDS = 1.0
STORAGE_DOWN_SECONDS = 5.0
# What each download attempt ended as (voice_recording_downloads_total).
OUTCOMES = (
    "stored",
    "refused",
    "unreachable",
    "cut_off",
    "short",
    "unauthorized",
    "throttled",
    "http_error",
    "store_error",
)
CONTENT_EXTENSIONS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
}


@dataclass(frozen=True)
class Stored:
    location: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Retry:
    outcome: str
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Refused:
    reason: str


class RecordingFetcher:
    """The job: takes due recordings one at a time, and removes those past their retention."""

    name = "recordings"

    def __init__(self, settings: Settings, recordings: Recordings, store, registry, stopping: threading.Event):
        self.settings = settings
        self.recordings = recordings
        self.store = store
        self.stopping = stopping
        self._signer = None
        self._session = None
        self.downloads = counted_by(
            "voice_recording_downloads", "Recording download attempts, by how each ended", "outcome", OUTCOMES, registry
        )
        self._dead_released = False
        self._next_prune = 0.0

    def run_due(self, now: float) -> float:
        try:
            if not self._dead_released:
                freed = self.recordings.release_leases_of_the_dead(process_alive)
                if freed:
                    log.info("%d recording download(s) cut off by a stop are taken up again", freed)
                self._dead_released = True
            if now >= self._next_prune:
                self.prune(now)
                self._next_prune = now + PRUNE_SECONDS
            recording = self.recordings.take_due(now, LEASE_SECONDS)
        except StorageError as error:
            log.warning("recordings wait for the call log: %s", error)
            return STORAGE_DOWN_SECONDS
        if recording is None:
            return IDLE_SECONDS
        self.fetch(recording)
        return 0.0

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    @property
    def session(self):
        """The HTTP session downloads go through, made at the first recording (like the signer: an app that fetches
        nothing loads neither requests nor PyJWT)."""
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def _deliveries(self, recording_uuid: str, now: float) -> list[dict]:
        """The deliveries of a recording just stored, to each endpoint of FORWARD_URL (when FORWARD_EVENTS wants
        recordings): made with its new state, so a recording is forwarded once it is safe."""
        wanted = forwarding(self.settings.forward_urls, self.settings.forward_events)
        if wanted is None or not wanted.wants_recordings:
            return []
        rows = delivery_rows(wanted, [(recording_uuid, RECORDING_TYPE)], now)
        return [dict(zip(DELIVERY_COLUMNS, row)) for row in rows]

    @property
    def signer(self):
        """What signs the application's JWTs, made at the first recording (PyJWT and cryptography are loaded only
        by a server that has one to fetch); None without the application's id and key."""
        if self._signer is None and self.settings.application_id and self.settings.private_key:
            from identity.user_tokens import UserTokenSigner

            self._signer = UserTokenSigner(self.settings.private_key)
        return self._signer

    # --- one attempt ---

    def fetch(self, recording: Recording) -> str:
        """Try to store `recording` once; record how it went; return its status now."""
        result = self.attempt(recording)
        now = time.time()
        uuid_ = recording.recording_uuid
        try:
            if isinstance(result, Stored):
                self.downloads["stored"].inc()
                self.recordings.finish(
                    uuid_,
                    STORED,
                    deliveries=self._deliveries(uuid_, now),
                    location=result.location,
                    sha256=result.sha256,
                    bytes=result.size,
                    stored_at=utc_timestamp(now),
                    last_error=None,
                    next_attempt_at=None,
                )
                log.info(
                    "recording %s stored at %s (%d bytes, sha256 %s)",
                    uuid_,
                    result.location,
                    result.size,
                    result.sha256[:12],
                    extra={"recording_uuid": uuid_, "conversation_uuid": recording.conversation_uuid},
                )
                return STORED
            if isinstance(result, Refused):
                self.downloads["refused"].inc()
                self.recordings.finish(uuid_, REFUSED, last_error=result.reason, next_attempt_at=None)
                log.warning("recording %s refused: %s", uuid_, result.reason, extra={"recording_uuid": uuid_})
                return REFUSED
            self.downloads[result.outcome].inc()
            if now - (epoch_seconds(recording.received_at) or now) >= GIVE_UP_AFTER.total_seconds():
                reason = f"not stored in {GIVE_UP_AFTER.days} days: {result.reason}"
                self.recordings.finish(uuid_, FAILED, last_error=reason, next_attempt_at=None)
                log.error("recording %s failed: %s", uuid_, reason, extra={"recording_uuid": uuid_})
                return FAILED
            delay = retry_delay(recording.attempts, result.retry_after)
            self.recordings.finish(uuid_, WAITING, last_error=result.reason, next_attempt_at=now + delay)
            log.warning(
                "recording %s not stored yet (attempt %d): %s; trying again in %.0f s",
                uuid_,
                recording.attempts,
                result.reason,
                delay,
                extra={"recording_uuid": uuid_},
            )
            return WAITING
        except StorageError as error:
            # Its lease runs out and it is taken again; a stored file is put again under the same name.
            log.warning("recording %s: its state could not be saved (%s)", uuid_, error)
            return WAITING

    def attempt(self, recording: Recording) -> Stored | Retry | Refused:
        if self.signer is None:
            return Retry(
                "unauthorized",
                "fetching recordings needs VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY, and they are not set",
            )
        import requests

        from identity.user_tokens import application_token_claims  # with the signer: PyJWT only when needed

        url = recording.recording_url
        for _ in range(MOST_REDIRECTS + 1):
            refusal = vonage_url_refusal(url, self.settings.trusted_hosts)
            if refusal is not None:
                return Refused(f"not fetched, as the request would carry the application's JWT: {refusal}")
            host = urlsplit(url).netloc
            token = self.signer.sign(
                application_token_claims(self.settings.application_id, datetime.now(UTC), TOKEN_LIFE)
            )
            try:
                response = self.session.get(
                    url,
                    headers={"Authorization": f"Bearer {token}"},
                    stream=True,
                    timeout=(CONNECT_SECONDS, READ_SECONDS),
                    allow_redirects=False,
                )
            except requests.RequestException as error:
                return Retry("unreachable", f"cannot reach {host}: {_brief(error)}")
            with response:
                if response.is_redirect or response.is_permanent_redirect:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                if response.status_code != 200:
                    return self._refused_by_server(host, response)
                return self.receive(recording, response)
        return Retry(
            "http_error", f"more than {MOST_REDIRECTS} redirects from {urlsplit(recording.recording_url).netloc}"
        )

    def _refused_by_server(self, host: str, response) -> Retry:
        status = response.status_code
        said = f"{host} answered {status} {response.reason or ''}".strip()
        wait = retry_after_seconds(response.headers.get("Retry-After"), time.time())
        if status in (401, 403):
            return Retry(
                "unauthorized",
                f"{said}: check VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY are the recording application's",
            )
        if status in (429, 503) and wait is not None:
            return Retry("throttled", f"{said}, retry after {wait:.0f} s", wait)
        return Retry("http_error", said, wait)

    def receive(self, recording: Recording, response) -> Stored | Retry:
        """Stream the body to a file of its own, check it, and put it in the store."""
        import requests

        extension = CONTENT_EXTENSIONS.get(
            (response.headers.get("Content-Type") or "").split(";")[0].strip().lower(), self.settings.record_format
        )
        name = file_name(recording.recording_uuid, extension)
        incoming = Path(self.store.incoming)
        part = incoming / f"{name}.{os.getpid()}.part"
        digest, received = hashlib.sha256(), 0
        renewed = time.monotonic()
        try:
            incoming.mkdir(parents=True, exist_ok=True)
            with open(part, "wb") as handle:
                for chunk in response.iter_content(64 * 1024):
                    if self.stopping.is_set():
                        return Retry("cut_off", f"the server stopped after {received} bytes")
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if time.monotonic() - renewed > RENEW_SECONDS:
                        self.recordings.renew(recording.recording_uuid, time.time() + LEASE_SECONDS)
                        renewed = time.monotonic()
            if recording.size is not None and received != recording.size:
                return Retry("short", f"received {received} bytes, and the webhook said {recording.size}")
            location = self.store.put(name, part, CONTENT_TYPES.get(extension, "application/octet-stream"))
        except requests.RequestException as error:
            return Retry("cut_off", f"the download was cut off after {received} bytes ({_brief(error)})")
        except StoreError as error:
            return Retry("store_error", str(error))
        except OSError as error:
            return Retry("store_error", f"cannot write {part}: {error.strerror or error}")
        finally:
            part.unlink(missing_ok=True)
        return Stored(location, digest.hexdigest(), received)

    # --- retention ---

    def prune(self, now: float) -> None:
        """Remove the recordings whose call the call log no longer has, and those past RECORDING_RETENTION: the
        stored file first, then its row."""
        retention = self.settings.recording_retention
        before = utc_timestamp(now - retention.total_seconds()) if retention else None
        for recording in self.recordings.to_remove(before):
            try:
                if recording.location:
                    self.store.delete(recording.location)
            except StoreError as error:
                log.warning("recording %s not removed yet: %s", recording.recording_uuid, error)
                return
            self.recordings.remove(recording.recording_uuid)
            log.info(
                "recording %s removed (retention)",
                recording.recording_uuid,
                extra={"recording_uuid": recording.recording_uuid},
            )


def _brief(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text[:300]}".strip()
