"""`flask webhooks`: point the application's voice webhooks at this server, keeping the rest of it."""

from __future__ import annotations

import requests
from vonage import Vonage
from vonage_application import ApplicationConfig
from vonage_http_client import HttpRequestError

from config import Settings
from vonage_helper.clients import DASHBOARD, account_client, explain, require


def point_webhooks(settings: Settings, public_url: str, client: Vonage | None = None) -> list[str]:
    """Set the application's voice answer (GET), event (POST) and fallback URLs to this server's routes.

    Returns a line per URL saying what it was and what it is now.
    """
    application_id = require(settings.application_id, "VONAGE_APPLICATION_ID", f"copy it from {DASHBOARD}")
    base = public_url.rstrip("/")
    wanted = {
        "answer_url": {"address": f"{base}/voice/answer", "http_method": "GET"},
        "event_url": {"address": f"{base}/voice/event", "http_method": "POST"},
        "fallback_answer_url": {"address": f"{base}/voice/fallback", "http_method": "GET"},
    }
    client = client or account_client(settings)
    try:
        current = client.application.get_application(application_id)
        config = current.model_dump(exclude_none=True, include={"name", "capabilities", "privacy", "keys"})
        capabilities = config.setdefault("capabilities", {})
        voice = capabilities.setdefault("voice", {})
        before = voice.get("webhooks", {})
        voice["webhooks"] = {**before, **{name: {**before.get(name, {}), **url} for name, url in wanted.items()}}
        client.application.update_application(application_id, ApplicationConfig(**config))
    except (HttpRequestError, requests.RequestException) as error:
        raise explain(error, "account") from None
    changes = []
    for name, url in wanted.items():
        old = before.get(name, {})
        old_text = f"{old.get('http_method', '?')} {old.get('address')}" if old.get("address") else "(not set)"
        new_text = f"{url['http_method']} {url['address']}"
        changes.append(
            f"{name:20} {old_text}  ->  {new_text}" if old_text != new_text else f"{name:20} {new_text} (unchanged)"
        )
    return changes
