"""The Vonage helper's commands: `flask call`, `flask token`, `flask webhooks`."""

from __future__ import annotations

import re

import click
from flask import current_app
from flask.cli import with_appcontext

from vonage_helper.calls import place_call
from vonage_helper.clients import EXIT_SETTINGS, HelperError
from vonage_helper.tokens import client_token, parse_ttl
from vonage_helper.webhooks import point_webhooks


def _fail(error: HelperError):
    click.echo(f"error: {error.message}", err=True)
    raise SystemExit(error.exit_code)


@click.command("call")
@click.argument("number")
@click.option("--say", default=None, help="What the callee hears when they answer.")
@click.option(
    "--connect", "connect_to", default=None, metavar="OTHER", help="Bridge the callee to OTHER when they answer."
)
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
