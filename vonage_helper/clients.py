"""Talking to Vonage for the command line: the two kinds of client, their credentials, and errors as one line."""

from __future__ import annotations

from pathlib import Path

import requests
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client import (
    AuthenticationError,
    ForbiddenError,
    HttpRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)

from config import Settings
from vonage_helper.errors import (
    EXIT_AUTH,
    EXIT_NOT_FOUND,
    EXIT_OTHER,
    EXIT_RATE_LIMITED,
    EXIT_REFUSED,  # noqa: F401 (callers import every exit code from here)
    EXIT_SETTINGS,
    EXIT_VONAGE_DOWN,
    HelperError,
)

DASHBOARD = "the Vonage dashboard"


def private_key_pem(setting: str | None) -> str:
    """The PEM text of VONAGE_PRIVATE_KEY, which holds either a path to the .key file or the PEM itself."""
    if not setting:
        raise HelperError(
            "VONAGE_PRIVATE_KEY is not set; download private.key from your application's page in "
            f"{DASHBOARD} and set VONAGE_PRIVATE_KEY=./private.key",
            EXIT_SETTINGS,
        )
    if "-----BEGIN" in setting:
        pem = setting.replace("\\n", "\n")
    else:
        path = Path(setting).expanduser()
        try:
            pem = path.read_text()
        except FileNotFoundError:
            raise HelperError(
                f"VONAGE_PRIVATE_KEY: file not found at {setting}; download it from your application's page in {DASHBOARD}",
                EXIT_SETTINGS,
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise HelperError(f"VONAGE_PRIVATE_KEY: cannot read {setting} ({error})", EXIT_SETTINGS) from None
    if "-----BEGIN PRIVATE KEY-----" not in pem:
        raise HelperError(
            "VONAGE_PRIVATE_KEY does not hold a PKCS#8 private key (-----BEGIN PRIVATE KEY-----); use the private.key "
            f"file {DASHBOARD} gave you when you created the application or generated a new key pair",
            EXIT_SETTINGS,
        )
    return pem


def require(value: str | None, variable: str, where: str) -> str:
    if not value:
        raise HelperError(f"{variable} is not set; {where}", EXIT_SETTINGS)
    return value


def _options(settings: Settings) -> HttpClientOptions:
    return (
        HttpClientOptions(api_host=settings.api_host, timeout=15)
        if settings.api_host
        else HttpClientOptions(timeout=15)
    )


def application_client(settings: Settings) -> Vonage:
    """A client that authenticates as the application (JWT): for calls."""
    application_id = require(
        settings.application_id, "VONAGE_APPLICATION_ID", f"copy it from your application's page in {DASHBOARD}"
    )
    auth = Auth(application_id=application_id, private_key=private_key_pem(settings.private_key))
    return Vonage(auth, _options(settings))


def account_client(settings: Settings) -> Vonage:
    """A client that authenticates with the account's key and secret: for the Applications API."""
    key = require(settings.api_key, "VONAGE_API_KEY", f"copy it from API settings in {DASHBOARD}")
    secret = require(settings.api_secret, "VONAGE_API_SECRET", f"copy it from API settings in {DASHBOARD}")
    return Vonage(Auth(api_key=key, api_secret=secret), _options(settings))


def explain(error: Exception, credentials: str) -> HelperError:
    """One readable line, and an exit code, for a failure talking to Vonage. `credentials` names what authenticated."""
    if isinstance(error, AuthenticationError):
        cause = (
            "the application id does not match the private key (the usual cause: the key belongs to another "
            "application, or a new key pair was generated)"
            if credentials == "application"
            else "VONAGE_API_KEY and VONAGE_API_SECRET do not match"
        )
        return HelperError(f"Vonage refused the credentials (401): {cause}", EXIT_AUTH)
    if isinstance(error, ForbiddenError):
        return HelperError(
            "Vonage refused the request (403): the account is not allowed to do this; check the account's "
            "balance and which destinations it may call",
            EXIT_AUTH,
        )
    if isinstance(error, NotFoundError):
        return HelperError(
            "Vonage found nothing there (404): check VONAGE_APPLICATION_ID and VONAGE_API_HOST", EXIT_NOT_FOUND
        )
    if isinstance(error, RateLimitedError):
        return HelperError("Vonage is rate limiting this account (429): wait a moment and try again", EXIT_RATE_LIMITED)
    if isinstance(error, ServerError) or (isinstance(error, HttpRequestError) and error.response.status_code >= 500):
        return HelperError(
            f"Vonage had a server error ({error.response.status_code}): try again shortly", EXIT_VONAGE_DOWN
        )
    if isinstance(error, HttpRequestError):
        return HelperError(
            f"Vonage rejected the request ({error.response.status_code}): {_vonage_detail(error.response)}", EXIT_OTHER
        )
    if isinstance(error, requests.RequestException):
        return HelperError(
            f"cannot reach Vonage ({type(error).__name__}); check the network, or VONAGE_API_HOST", EXIT_VONAGE_DOWN
        )
    raise error


def _vonage_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or "no details"
    parts = [str(body.get(key)) for key in ("title", "detail") if body.get(key)]
    for problem in body.get("invalid_parameters") or []:
        parts.append(f"{problem.get('name')}: {problem.get('reason')}")
    return "; ".join(parts) or str(body)[:200]
