"""What the server is and how it is: `/` lists the routes, `/health` reports each part's state, `/metrics` serves
what it counted to Prometheus (runtime/metrics.py)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app

from calllog import access
from calllog.api import token_refusal
from calllog.recordings import STATUSES, Recordings
from calllog.schema import StorageError
from config import Settings
from edge import errors
from events import epoch_seconds, utc_timestamp
from ncco import WEBHOOKS
from runtime import metrics

__version__ = "0.1.0"

bp = Blueprint("status", __name__)
# The routes a person or a script starts from, by the names Vonage's application settings use.
ROUTES = {
    **{webhook.setting or f"{webhook.name}_event_url": webhook.path for webhook in WEBHOOKS},
    "health": "/health",
    "call_log": "/api/calls",
    "call_log_page": "/calls",
    "metrics": "/metrics",
    "client_token": "/client/token",
}


@bp.get("/")
def index():
    return {"service": "Vonage voice webhook server", "version": __version__, "routes": ROUTES}


@bp.get("/health")
def health():
    settings: Settings = current_app.config["SETTINGS"]
    call_log = current_app.extensions["call_log"]
    storage = call_log.reader.health()
    writer = call_log.writer_health()
    # Still 200 when the database or the writer is down: answering calls needs neither, and a load balancer
    # that took this server out of rotation would drop calls it can still answer.
    return {
        "status": "ok" if storage["status"] == "ok" and writer["status"] == "ok" else "degraded",
        "version": __version__,
        "parts": {
            "answer": {"status": "ok", "caller_id": settings.vonage_number or "randomFromNumber"},
            "events": {"status": "ok", "log_format": settings.log_format},
            "signatures": signatures_health(settings),
            "storage": storage,
            "writer": writer,
        },
    }


def signatures_health(settings: Settings) -> dict:
    """The signature check's state for /health: on (with how many secrets) or off, with a warning."""
    if not settings.signature_secrets:
        return {
            "status": "off",
            "warning": "VONAGE_SIGNATURE_SECRET is not set: webhooks are accepted without checking they come from Vonage",
        }
    return {"status": "on", "secrets": len(settings.signature_secrets), "max_age": settings.signature_max_age}


@bp.get("/metrics")
def scrape():
    # The header only: Prometheus sends it, and a browser's cookie has no business here.
    refusal = token_refusal(
        "metrics", "/metrics needs the call log's token", " (Prometheus: authorization.credentials)", cookie=False
    )
    if refusal is not None:
        answer = errors.error_response(refusal)
    else:
        gauges = recording_gauges(current_app.extensions["call_log"].database, current_app.config["SETTINGS"])
        text = metrics.exposition(current_app.extensions["metrics"], gauges)
        answer = Response(text, content_type=metrics.CONTENT_TYPE)
    return access.add_headers(current_app.make_response(answer), access.API_HEADERS)


def recording_gauges(database, settings: Settings) -> list:
    """The recordings' state for /metrics, read from the call log now; none while it cannot be read."""
    now = time.time()
    alert = settings.recording_alert_after.total_seconds()
    try:
        recordings = Recordings(database)
        summary = recordings.summary(utc_timestamp(now - alert))
        missed = recordings.count_missed(utc_timestamp(now - alert))
    except StorageError:
        return []
    oldest = summary["oldest_pending"]
    received = epoch_seconds(oldest) if oldest else None
    waited = max(0.0, now - received) if received is not None else 0.0
    by_status = {status: summary["by_status"].get(status, 0) for status in STATUSES}
    return [
        ("voice_recordings", "Recordings in the call log, by status", "status", by_status),
        ("voice_recordings_stored_bytes", "Bytes of the recordings stored", None, {None: summary["bytes"]}),
        (
            "voice_recording_oldest_pending_seconds",
            "Age of the oldest recording not stored yet (0: none)",
            None,
            {None: waited},
        ),
        (
            "voice_recordings_at_risk",
            "Recordings at risk: not stored RECORDING_ALERT_AFTER after their webhook, or recorded calls whose webhook "
            "has not come that long after they ended",
            "reason",
            {"not_stored": summary["at_risk"], "webhook_missing": missed},
        ),
    ]
