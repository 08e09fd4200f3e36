"""`flask webhooks`: point the application's voice webhooks at this server, show them, and put the earlier ones back."""

from __future__ import annotations

import copy
from pathlib import Path

import requests
from vonage import Vonage
from vonage_http_client import HttpRequestError

from config import Settings
from ncco import WEBHOOKS
from vonage_helper.backups import WebhookBackup
from vonage_helper.clients import DASHBOARD, account_client, explain, require
from vonage_helper.errors import EXIT_SETTINGS, HelperError

# This server's route and method for each of the application's voice webhooks: the only settings changed.
ROUTES = {webhook.setting: (webhook.path, webhook.method) for webhook in WEBHOOKS if webhook.setting}
# What a GET returns that is no part of the application a PUT describes.
_READ_ONLY = ("id", "_links")


class Application:
    """One application through the Applications API, read and written as the JSON Vonage sends.

    Not through the SDK's models: they drop every field they do not know (a newer capability such as network_apis,
    a setting added after this SDK release), and the PUT, which replaces the whole application, would then remove
    them. The SDK's HTTP client still does the talking: its credentials, host, retries and errors.
    """

    def __init__(self, settings: Settings, client: Vonage | None = None):
        self.id = require(settings.application_id, "VONAGE_APPLICATION_ID", f"copy it from {DASHBOARD}")
        self.client = client or account_client(settings)

    def read(self) -> dict:
        return self._call("get", None)

    def write_webhooks(self, application: dict, webhooks: dict[str, dict | None]) -> None:
        """PUT `application` back as read, with the voice webhooks in `webhooks` set (None: removed)."""
        body = {key: value for key, value in copy.deepcopy(application).items() if key not in _READ_ONLY}
        voice = body.setdefault("capabilities", {}).setdefault("voice", {})
        merged = dict(voice.get("webhooks") or {})
        for name, setting in webhooks.items():
            if setting is None:
                merged.pop(name, None)
            else:
                merged[name] = setting
        voice["webhooks"] = merged
        self._call("put", body)

    def _call(self, method: str, body: dict | None) -> dict:
        return applications_api(self.client, method, f"/v2/applications/{self.id}", body)


def applications_api(client: Vonage, method: str, path: str, body: dict | None) -> dict:
    """One request to the Applications API with the account's key and secret (what `flask setup` creates with
    too); its JSON answer, {} when it has none. Raises HelperError."""
    http = client.http_client
    try:
        return getattr(http, method)(http.api_host, path, body, "basic") or {}
    except (HttpRequestError, requests.RequestException) as error:
        raise explain(error, "account") from None


def voice_webhooks(application: dict) -> dict[str, dict | None]:
    """The application's answer, event and fallback settings (address, http_method, timeouts), None where unset."""
    webhooks = ((application.get("capabilities") or {}).get("voice") or {}).get("webhooks") or {}
    return {name: webhooks.get(name) for name in ROUTES}


def server_webhooks(base: str, current: dict[str, dict | None]) -> dict[str, dict]:
    """This server's routes under `base`, each keeping the timeouts it had."""
    return {
        name: {**(current[name] or {}), "address": f"{base}{path}", "http_method": method}
        for name, (path, method) in ROUTES.items()
    }


def pointed_base(webhooks: dict[str, dict | None]) -> str | None:
    """The base URL whose /voice/answer and /voice/event the application calls, or None when it calls elsewhere."""
    answer = (webhooks.get("answer_url") or {}).get("address") or ""
    event = (webhooks.get("event_url") or {}).get("address") or ""
    path = ROUTES["answer_url"][0]
    if not answer.endswith(path):
        return None
    base = answer[: -len(path)]
    return base if event == base + ROUTES["event_url"][0] else None


def describe(setting: dict | None) -> str:
    if not setting or not setting.get("address"):
        return "(not set)"
    return f"{setting.get('http_method', '?')} {setting['address']}"


def change_lines(before: dict[str, dict | None], after: dict[str, dict | None]) -> list[str]:
    lines = []
    for name in ROUTES:
        old, new = describe(before[name]), describe(after[name])
        lines.append(f"{name:20} {old}  ->  {new}" if old != new else f"{name:20} {new} (unchanged)")
    return lines


def point_webhooks(
    settings: Settings, public_url: str, client: Vonage | None = None, backup_folder: Path | str | None = None
) -> list[str]:
    """Set the application's voice answer (GET), event (POST) and fallback URLs to this server's routes.

    With `backup_folder`, first records the settings they had there (see remember_webhooks).
    Returns a line per URL saying what it was and what it is now. Raises HelperError.
    """
    application = Application(settings, client)
    current = application.read()
    before = voice_webhooks(current)
    base = public_url.rstrip("/")
    after = server_webhooks(base, before)
    if backup_folder is not None:
        remember_webhooks(WebhookBackup(application.id, backup_folder), before, base, settings.public_url)
    application.write_webhooks(current, after)
    return change_lines(before, after)


def remember_webhooks(backup: WebhookBackup, before: dict, base: str, public_url: str | None) -> None:
    """Record `before`, unless a record exists and `before` already points at this server.

    Then the record still holds the settings from before this tool first pointed the application here, which a
    second run (or a new ngrok URL) must not lose. "This server" is `base`, PUBLIC_URL, or any base URL this
    tool has pointed the application at since the record was made.
    """
    record = backup.read() if backup.exists() else None
    if record is not None:
        ours = {url for url in (base, public_url, *record["pointed_at"]) if url}
        if pointed_base(before) in ours:
            backup.add_pointed_at(record, base)
            return
    backup.save(before, [base])


def restore_webhooks(
    settings: Settings,
    backup_folder: Path | str,
    client: Vonage | None = None,
    only_if_at: str | None = None,
) -> list[str]:
    """Put back the recorded voice webhooks, then delete the record; returns a line per URL. Raises HelperError.

    With `only_if_at`, leave the application alone if it no longer points at that base URL: someone changed
    it meanwhile, and their change wins.
    """
    application = Application(settings, client)
    backup = WebhookBackup(application.id, backup_folder)
    record = backup.read()
    current = application.read()
    before = voice_webhooks(current)
    if only_if_at is not None and pointed_base(before) != only_if_at:
        raise HelperError(
            f"the application no longer points at {only_if_at} (changed meanwhile), so it is left as it is; "
            f"flask webhooks --restore puts back the settings recorded in {backup.path}",
            EXIT_SETTINGS,
        )
    after = {name: record["webhooks"].get(name) for name in ROUTES}
    application.write_webhooks(current, after)
    backup.remove()
    return change_lines(before, after)


def show_webhooks(
    settings: Settings,
    backup_folder: Path | str,
    client: Vonage | None = None,
    ngrok_url: str | None = None,
) -> list[str]:
    """What the application's voice webhooks point at now, whether that is this server, and any record kept."""
    application = Application(settings, client)
    current = application.read()
    webhooks = voice_webhooks(current)
    lines = [f"application {application.id} ({current.get('name', 'no name')}) voice webhooks:"]
    lines += [f"  {name:20} {describe(webhooks[name])}" for name in ROUTES]
    lines.append(here_line(webhooks, ngrok_url, settings.public_url))
    backup = WebhookBackup(application.id, backup_folder)
    if backup.exists():
        lines.append(f"the earlier settings are recorded in {backup.path}; flask webhooks --restore puts them back")
    return lines


def here_line(webhooks: dict[str, dict | None], ngrok_url: str | None, public_url: str | None) -> str:
    """Whether the webhooks point at this server: the ngrok tunnel's URL or PUBLIC_URL."""
    base = pointed_base(webhooks)
    for name, url in (("the ngrok tunnel", ngrok_url), ("PUBLIC_URL", public_url)):
        if url and base == url:
            fallback = describe(webhooks["fallback_answer_url"])
            if fallback != describe(server_webhooks(url, webhooks)["fallback_answer_url"]):
                return f"this server: yes, through {name} {url} (but the fallback URL is {fallback})"
            return f"this server: yes, through {name} {url}"
    known = [f"{name} {url}" for name, url in (("the ngrok tunnel", ngrok_url), ("PUBLIC_URL", public_url)) if url]
    if not known:
        return "this server: cannot tell (no ngrok tunnel is running and PUBLIC_URL is not set)"
    return f"this server: no (it is not {' or '.join(known)}); flask webhooks --ngrok points it here"
