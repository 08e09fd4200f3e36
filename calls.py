"""The Vonage client helper: place calls, mint Client SDK tokens, point the application's webhooks here."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click
import requests
from flask import current_app
from flask.cli import with_appcontext
from vonage import Auth, HttpClientOptions, Vonage
from vonage_application import ApplicationConfig
from vonage_http_client import (
    AuthenticationError,
    ForbiddenError,
    HttpRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)
from vonage_voice.models import CreateCallRequest, Phone, Talk, ToPhone

from config import Settings
from ncco import NumberError, action_json, connect_ncco, normalize_callee, parse_ncco

DEFAULT_MESSAGE = "Hello. This is a call from your Vonage voice server."
MAX_TOKEN_SECONDS = 24 * 3600
# The paths the Client SDK tutorial's user tokens grant.
CLIENT_SDK_ACL = {
    "paths": {
        "/*/users/**": {},
        "/*/conversations/**": {},
        "/*/sessions/**": {},
        "/*/devices/**": {},
        "/*/image/**": {},
        "/*/media/**": {},
        "/*/applications/**": {},
        "/*/push/**": {},
        "/*/knocking/**": {},
        "/*/legs/**": {},
    }
}
DASHBOARD = "the Vonage dashboard"

# Exit codes of the commands, by what went wrong.
EXIT_SETTINGS, EXIT_REFUSED, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_RATE_LIMITED, EXIT_VONAGE_DOWN, EXIT_OTHER = 2, 3, 4, 5, 6, 7, 8


class HelperError(Exception):
    """A failure to show as one line, with the exit code the command ends with."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


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


def _require(value: str | None, variable: str, where: str) -> str:
    if not value:
        raise HelperError(f"{variable} is not set; {where}", EXIT_SETTINGS)
    return value


def _options(settings: Settings) -> HttpClientOptions:
    return HttpClientOptions(api_host=settings.api_host, timeout=15) if settings.api_host else HttpClientOptions(timeout=15)


def application_client(settings: Settings) -> Vonage:
    """A client that authenticates as the application (JWT): for calls."""
    application_id = _require(
        settings.application_id, "VONAGE_APPLICATION_ID", f"copy it from your application's page in {DASHBOARD}"
    )
    auth = Auth(application_id=application_id, private_key=private_key_pem(settings.private_key))
    return Vonage(auth, _options(settings))


def account_client(settings: Settings) -> Vonage:
    """A client that authenticates with the account's key and secret: for the Applications API."""
    key = _require(settings.api_key, "VONAGE_API_KEY", f"copy it from API settings in {DASHBOARD}")
    secret = _require(settings.api_secret, "VONAGE_API_SECRET", f"copy it from API settings in {DASHBOARD}")
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


@dataclass(frozen=True)
class PlacedCall:
    uuid: str
    conversation_uuid: str
    status: str
    to: str
    ncco: list


def place_call(settings: Settings, to: str, say: str | None = None, connect: str | None = None,
               client: Vonage | None = None) -> PlacedCall:
    """Call `to` from the server: speak `say`, and bridge to `connect` when answered (click-to-call).

    Both numbers go through the same normalisation and policy as /voice/answer. Raises HelperError.
    """
    policy = settings.destination_policy
    try:
        callee = normalize_callee(to, policy)
        other = normalize_callee(connect, policy) if connect else None
    except NumberError as refusal:
        raise HelperError(f"refused: {refusal.detail}", EXIT_REFUSED) from None
    if other:
        ncco = connect_ncco(other, replace(settings.call_plan, greeting=say or settings.greeting))
    else:
        ncco = [action_json(Talk(text=say or DEFAULT_MESSAGE, language=settings.tts_language))]
    caller_id = {"from_": Phone(number=settings.vonage_number)} if settings.vonage_number else {"random_from_number": True}
    event_url = {"event_url": [f"{settings.public_url}/voice/event"]} if settings.public_url else {}
    request = CreateCallRequest(to=[ToPhone(number=callee)], ncco=parse_ncco(ncco), **caller_id, **event_url)
    client = client or application_client(settings)
    try:
        response = client.voice.create_call(request)
    except (HttpRequestError, requests.RequestException) as error:
        raise explain(error, "application") from None
    return PlacedCall(response.uuid, response.conversation_uuid, response.status, callee, ncco)


def parse_ttl(text: str) -> int:
    """Seconds from "90", "15m", "1h" or "1d"; raises HelperError beyond 1 s to 24 h."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise HelperError(f"--ttl {text!r} is not a duration; for example --ttl 1h or --ttl 900", EXIT_SETTINGS)
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if not 1 <= seconds <= MAX_TOKEN_SECONDS:
        raise HelperError(f"--ttl {text!r} is outside 1 s to 24 h", EXIT_SETTINGS)
    return seconds


def client_token(settings: Settings, user: str, ttl_seconds: int, now: float | None = None) -> str:
    """A Client SDK JWT (RS256) for `user`, with the tutorial's ACL, valid for `ttl_seconds`."""
    if not user.strip():
        raise HelperError("USER is empty; give the Client SDK user name, e.g. flask token Alice", EXIT_SETTINGS)
    issued = int(now if now is not None else time.time())
    auth = Auth(
        application_id=_require(settings.application_id, "VONAGE_APPLICATION_ID", f"copy it from {DASHBOARD}"),
        private_key=private_key_pem(settings.private_key),
    )
    claims = {"sub": user, "acl": CLIENT_SDK_ACL, "iat": issued, "exp": issued + ttl_seconds}
    return auth.generate_application_jwt(claims).decode()


def point_webhooks(settings: Settings, public_url: str, client: Vonage | None = None) -> list[str]:
    """Set the application's voice answer (GET), event (POST) and fallback URLs to this server's routes.

    Returns a line per URL saying what it was and what it is now.
    """
    application_id = _require(settings.application_id, "VONAGE_APPLICATION_ID", f"copy it from {DASHBOARD}")
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
        changes.append(f"{name:20} {old_text}  ->  {new_text}" if old_text != new_text else f"{name:20} {new_text} (unchanged)")
    return changes


def _fail(error: HelperError):
    click.echo(f"error: {error.message}", err=True)
    raise SystemExit(error.exit_code)


@click.command("call")
@click.argument("number")
@click.option("--say", default=None, help="What the callee hears when they answer.")
@click.option("--connect", "connect_to", default=None, metavar="OTHER", help="Bridge the callee to OTHER when they answer.")
@with_appcontext
def call_command(number: str, say: str | None, connect_to: str | None):
    """Place a call to NUMBER from the server."""
    settings = current_app.config["SETTINGS"]
    try:
        placed = place_call(settings, number, say, connect_to)
    except HelperError as error:
        _fail(error)
    click.echo(f"calling {placed.to}: {placed.status}")
    click.echo(f"call uuid          {placed.uuid}")
    click.echo(f"conversation uuid  {placed.conversation_uuid}")
    if not settings.public_url:
        click.echo("note: PUBLIC_URL is not set, so this call's events go to the application's event URL")


@click.command("token")
@click.argument("user")
@click.option("--ttl", default="1h", show_default=True, help="How long the token is valid: 900, 15m, 1h, up to 24h.")
@with_appcontext
def token_command(user: str, ttl: str):
    """Print a Client SDK login token (JWT) for USER."""
    try:
        click.echo(client_token(current_app.config["SETTINGS"], user, parse_ttl(ttl)))
    except HelperError as error:
        _fail(error)


@click.command("webhooks")
@click.argument("public_url")
@with_appcontext
def webhooks_command(public_url: str):
    """Point the Vonage application's voice webhooks at PUBLIC_URL (this server, e.g. behind ngrok)."""
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", public_url):
        _fail(HelperError(f"{public_url!r} is not a base URL such as https://abc123.ngrok.app", EXIT_SETTINGS))
    try:
        changes = point_webhooks(current_app.config["SETTINGS"], public_url)
    except HelperError as error:
        _fail(error)
    click.echo("updated the application's voice webhooks:")
    for line in changes:
        click.echo(f"  {line}")


COMMANDS = (call_command, token_command, webhooks_command)
