"""The Vonage helper's commands: `flask call`, `flask token`, `flask webhooks`."""

from __future__ import annotations

import re

import click
from flask import current_app
from flask.cli import with_appcontext

from commands.cli import Command
from vonage_helper.calls import place_call
from vonage_helper.clients import EXIT_SETTINGS, HelperError
from vonage_helper.ngrok import NgrokError, find_tunnel
from vonage_helper.tokens import client_token, parse_ttl
from vonage_helper.webhooks import point_webhooks, restore_webhooks, show_webhooks


def _fail(error: HelperError):
    click.echo(f"error: {error.message}", err=True)
    raise SystemExit(error.exit_code)


@click.command("call", cls=Command)
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


@click.command("token", cls=Command)
@click.argument("user")
@click.option("--ttl", default="1h", show_default=True, help="How long the token is valid: 900, 15m, 1h, up to 24h.")
@with_appcontext
def token_command(user: str, ttl: str):
    """Print a Client SDK login token (JWT) for USER."""
    try:
        click.echo(client_token(current_app.config["SETTINGS"], user, parse_ttl(ttl)))
    except HelperError as error:
        _fail(error)


@click.command("webhooks", cls=Command)
@click.argument("public_url", required=False)
@click.option("--ngrok", "use_ngrok", is_flag=True, help="Point them at the running ngrok agent's https tunnel.")
@click.option("--show", is_flag=True, help="Print what they point at now, and whether that is this server.")
@click.option("--restore", is_flag=True, help="Put back the settings they had before they were pointed here.")
@with_appcontext
def webhooks_command(public_url: str | None, use_ngrok: bool, show: bool, restore: bool):
    """Point the Vonage application's voice webhooks at PUBLIC_URL (or the ngrok tunnel), show them, or restore them.

    Before changing them, the earlier settings are recorded in the instance folder, for --restore.
    """
    if sum(bool(choice) for choice in (public_url, use_ngrok, show, restore)) != 1:
        _fail(
            HelperError(
                "give one of PUBLIC_URL, --ngrok, --show or --restore; for example flask webhooks --ngrok",
                EXIT_SETTINGS,
            )
        )
    settings = current_app.config["SETTINGS"]
    folder = current_app.instance_path
    try:
        if show:
            lines = show_webhooks(settings, ngrok_url=_ngrok_url_if_running(settings), backup_folder=folder)
            heading = None
        elif restore:
            lines = restore_webhooks(settings, backup_folder=folder)
            heading = "put back the application's earlier voice webhooks:"
        else:
            lines = point_webhooks(settings, _target_url(settings, public_url), backup_folder=folder)
            heading = "updated the application's voice webhooks:"
    except HelperError as error:
        _fail(error)
    if heading:
        click.echo(heading)
    for line in lines:
        click.echo(f"  {line}" if heading else line)


def _target_url(settings, public_url: str | None) -> str:
    """PUBLIC_URL as given, checked, or the ngrok tunnel's public URL; raises HelperError."""
    if public_url is None:
        tunnel = find_tunnel(settings)
        if tunnel.warning(settings.port):
            click.echo(f"warning: {tunnel.warning(settings.port)}", err=True)
        return tunnel.public_url
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", public_url):
        raise HelperError(f"{public_url!r} is not a base URL such as https://abc123.ngrok.app", EXIT_SETTINGS)
    return public_url


def _ngrok_url_if_running(settings) -> str | None:
    try:
        return find_tunnel(settings).public_url
    except NgrokError:
        return None
