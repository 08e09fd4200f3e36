"""`flask push`: uploading the credentials Vonage rings a backgrounded app with (the Applications API's push-token
endpoints). Vonage stores whatever it is sent and checks none of it, so a wrong file would only show as an app that
never rings; each file is checked here first, and each problem is one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from vonage import Vonage
from vonage_http_client import HttpRequestError

from vonage_helper.clients import explain
from vonage_helper.errors import EXIT_SETTINGS, HelperError


def _refuse(path: Path, problem: str) -> HelperError:
    return HelperError(f"{path}: {problem}", EXIT_SETTINGS)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _refuse(path, "no such file") from None
    except OSError as error:
        raise _refuse(path, f"cannot be read ({error.strerror})") from None


def android_credentials(path: Path) -> dict:
    """The body of the Android upload from a Firebase service-account key file: the file itself and its project."""
    try:
        account = json.loads(_read(path))
    except ValueError:
        raise _refuse(path, "is not JSON; download the key from Firebase: Project settings, Service accounts") from None
    if not isinstance(account, dict) or account.get("type") != "service_account":
        raise _refuse(path, 'is not a service-account key (its "type" is not "service_account")')
    project = account.get("project_id")
    if not isinstance(project, str) or not project.strip():
        raise _refuse(path, 'has no "project_id"')
    try:
        serialization.load_pem_private_key(str(account.get("private_key", "")).encode(), password=None)
    except (ValueError, TypeError):
        raise _refuse(path, 'has a "private_key" that does not load (edited, or cut short?)') from None
    return {"token": json.dumps(account), "projectId": project}


def ios_credentials(path: Path, password: str | None, now: datetime | None = None) -> dict:
    """The body of the iOS upload from an APNs .p12: hex-encoded, once it opens and its certificate is current."""
    data = _read(path)
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except (ValueError, TypeError):
        given = "with that --password" if password else "without a password (give --password)"
        raise _refuse(path, f"does not open {given}, or is not a .p12 file") from None
    if certificate is None or key is None:
        raise _refuse(path, "holds no certificate and private key; export both from Keychain Access")
    expiry = certificate.not_valid_after_utc
    if expiry < (now or datetime.now(UTC)):
        raise _refuse(path, f"its certificate expired on {expiry:%Y-%m-%d}; make a new one in Apple's developer portal")
    body = {"token": data.hex()}
    if password:
        body["password"] = password
    return body


def upload_push_credentials(client: Vonage, application_id: str, platform: str, body: dict) -> None:
    """PUT the credentials to the application's push-token endpoint for `platform` (android or ios)."""
    http = client.http_client
    try:
        http.put(http.api_host, f"/v1/applications/{application_id}/push_tokens/{platform}", body, "jwt")
    except (HttpRequestError, requests.RequestException) as error:
        raise explain(error, "application") from None
