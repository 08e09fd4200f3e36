"""Talking to Vonage for the command line: the two kinds of client, their credentials, and errors as one line."""

from __future__ import annotations

import logging

import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client import (
    AuthenticationError,
    ForbiddenError,
    HttpRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)

from config import Settings, private_key_refusal, private_key_source, private_key_text
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
# The SDK logs each error answer as a warning on its `vonage` logger, which has no handler, so Python's last-resort
# handler printed it on standard error beside the command's own line (explain); a handler that drops it ends that,
# and a handler configured above it (the root logger's) still gets the records.
logging.getLogger("vonage").addHandler(logging.NullHandler())


def private_key_pem(setting: str | None) -> str:
    """The application's private key as the PKCS#8 PEM the SDK takes, from VONAGE_PRIVATE_KEY (a path to the .key
    file, or the PEM itself); HelperError, one line, when it is not set or cannot sign.

    Start-up has already checked the key without cryptography (config.private_key_text); this loads it in full,
    as signing will, so that whatever got past that check is one line here too rather than a traceback from the
    SDK. A PKCS#1 key (-----BEGIN RSA PRIVATE KEY-----, as openssl genrsa writes) is handed on as PKCS#8: the SDK
    takes a key given as text only in that form.
    """
    if not setting:
        raise HelperError(
            "VONAGE_PRIVATE_KEY is not set; download private.key from your application's page in "
            f"{DASHBOARD} and set VONAGE_PRIVATE_KEY=./private.key",
            EXIT_SETTINGS,
        )
    try:
        pem = private_key_text(setting)
    except ValueError as problem:
        raise HelperError(private_key_refusal(str(problem)), EXIT_SETTINGS) from None
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        reason = str(error).strip().splitlines()[0].split(". ")[0].rstrip(".") if str(error).strip() else "no reason"
        refusal = f"{private_key_source(setting)} does not load as a private key ({reason})"
        raise HelperError(private_key_refusal(refusal), EXIT_SETTINGS) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        refusal = f"{private_key_source(setting)} is not an RSA key: Vonage signs application JWTs with RS256"
        raise HelperError(private_key_refusal(refusal), EXIT_SETTINGS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def require(value: str | None, variable: str, where: str) -> str:
    if not value:
        raise HelperError(f"{variable} is not set; {where}", EXIT_SETTINGS)
    return value


def _options(settings: Settings) -> HttpClientOptions:
    """The SDK's defaults, but for the hosts a setting names (a regional API host, or a stand-in in tests) and
    VONAGE_TIMEOUT."""
    hosts = {"api_host": settings.api_host, "rest_host": settings.rest_host}
    return HttpClientOptions(timeout=settings.vonage_timeout, **{name: host for name, host in hosts.items() if host})


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
    if isinstance(error, requests.Timeout):
        return HelperError(
            f"Vonage did not answer in time ({type(error).__name__}): try again shortly, or give it longer with "
            "VONAGE_TIMEOUT (seconds)",
            EXIT_VONAGE_DOWN,
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
