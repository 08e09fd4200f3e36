"""`flask sign`: a request to this server signed as Vonage signs webhooks, as a curl command line or sent at once.

No SDK here: signing needs only the signature secret, so the command starts quickly.
"""

from __future__ import annotations

import shlex
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

import click
from flask import current_app
from flask.cli import with_appcontext

from commands.cli import Command, check_base_url
from config import Settings
from edge.signatures import sign_webhook
from vonage_helper.errors import EXIT_SETTINGS, HelperError

# The server under test is local (or named by --url): a proxy from the environment must not be asked for it.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class SignedRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None


def parse_fields(fields: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for field in fields:
        key, equals, value = field.partition("=")
        if not equals or not key:
            raise HelperError(f"--field {field!r} is not key=value; for example --field to=447700900000", EXIT_SETTINGS)
        pairs.append((key, value))
    return pairs


def signed_request(
    settings: Settings,
    path: str,
    base_url: str,
    json_body: str | None = None,
    fields: list[tuple[str, str]] = (),
    method: str | None = None,
    now: float | None = None,
) -> SignedRequest:
    """The request: `json_body` POSTed as it is, or `fields` as a query string (GET) or a form body (POST).

    Signed with the first VONAGE_SIGNATURE_SECRET, as Vonage signs: payload_hash over the raw body for a POST,
    over the query parameters (PATH's own first, then `fields`) as compact JSON in their order for a GET.
    With no secret, the same request without Authorization. Raises HelperError.
    """
    method = (method or ("POST" if json_body is not None else "GET")).upper()
    if json_body is not None and (fields or method != "POST"):
        raise HelperError("--json is a POST body on its own; leave out --field and --method GET", EXIT_SETTINGS)
    route, _, query = (path if path.startswith("/") else f"/{path}").partition("?")
    query_pairs = parse_qsl(query, keep_blank_values=True)
    headers = []
    if json_body is not None:
        body, headers = json_body.encode("utf-8"), [("Content-Type", "application/json")]
    elif method == "GET":
        body, query_pairs = None, [*query_pairs, *fields]
    else:
        body = urlencode(list(fields)).encode("ascii")
        headers = [("Content-Type", "application/x-www-form-urlencoded")]
    url = base_url.rstrip("/") + route + (f"?{urlencode(query_pairs)}" if query_pairs else "")
    if settings.signature_secrets:
        extra = {"api_key": settings.api_key} if settings.api_key else {}
        token = sign_webhook(
            settings.signature_secrets[0],
            method,
            body or b"",
            query_pairs,
            time.time() if now is None else now,
            application_id=settings.application_id,
            **extra,
        )
        headers.insert(0, ("Authorization", token))
    return SignedRequest(method, url, headers, body)


def curl_command(request: SignedRequest) -> str:
    """One shell-quoted curl command line that sends `request` exactly (`eval` runs it)."""
    words = ["curl", "-sS", "-i"]
    # curl sends GET, or POST when given a body, by itself.
    if (request.method, request.body is not None) not in (("GET", False), ("POST", True)):
        words += ["-X", request.method]
    words.append(request.url)
    for name, value in request.headers:
        words += ["-H", f"{name}: {value}"]
    if request.body is not None:
        # --data-raw, not --data-binary: a body starting with @ is sent as it is, not read from a file.
        words += ["--data-raw", request.body.decode("utf-8")]
    return " ".join(shlex.quote(word) for word in words)


def send(request: SignedRequest, timeout: float = 10) -> tuple[int, str, bytes]:
    """Send `request`; returns the status, its reason and the body. Raises HelperError when nothing answers."""
    outgoing = urllib.request.Request(request.url, data=request.body, method=request.method)
    for name, value in request.headers:
        outgoing.add_header(name, value)
    try:
        with _opener.open(outgoing, timeout=timeout) as response:
            return response.status, response.reason, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.reason, error.read()
    except (urllib.error.URLError, OSError) as error:
        server = f"{urlsplit(request.url).scheme}://{urlsplit(request.url).netloc}"
        raise HelperError(
            f"cannot reach {server} ({getattr(error, 'reason', error)}); start the server with make run, or give --url",
            1,
        ) from None


@click.command("sign", cls=Command)
@click.argument("path")
@click.option("--json", "json_body", metavar="BODY", default=None, help="POST this exact JSON body.")
@click.option("--field", "fields", metavar="KEY=VALUE", multiple=True, help="A field: query string, or form with POST.")
@click.option("--method", type=click.Choice(["GET", "POST"], case_sensitive=False), default=None, help="GET or POST.")
@click.option(
    "--url",
    "base_url",
    metavar="BASE",
    default=None,
    callback=check_base_url,
    help="The server (default http://127.0.0.1:PORT).",
)
@click.option("--run", is_flag=True, help="Send it now and print the status and body, instead of the curl command.")
@with_appcontext
def sign_command(path: str, json_body: str | None, fields: tuple[str, ...], method, base_url, run: bool):
    """Print a curl command line for PATH, signed with VONAGE_SIGNATURE_SECRET as Vonage signs webhooks.

    For example: eval "$(flask sign /voice/answer --field to=447700900000 --field from_user=Alice)"
    """
    settings = current_app.config["SETTINGS"]
    try:
        request = signed_request(
            settings, path, base_url or f"http://127.0.0.1:{settings.port}", json_body, parse_fields(fields), method
        )
        if not settings.signature_secrets:
            click.echo("warning: VONAGE_SIGNATURE_SECRET is not set, so the request is not signed", err=True)
        if not run:
            click.echo(curl_command(request))
            return
        status, reason, body = send(request)
    except HelperError as error:
        click.echo(f"error: {error.message}", err=True)
        raise SystemExit(error.exit_code) from None
    click.echo(f"{status} {reason}")
    if body:
        click.echo(body.decode("utf-8", "replace"))
    if status >= 400:
        raise SystemExit(1)
