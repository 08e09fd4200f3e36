"""`flask setup`: the command; what it does is vonage_helper.setup's."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from commands.cli import Command, CommandError
from config import Settings
from vonage_helper.clients import account_client
from vonage_helper.errors import EXIT_SETTINGS, HelperError
from vonage_helper.ngrok import NgrokError, find_tunnel
from vonage_helper.setup import DEFAULT_NAME, set_up


@click.command("setup", cls=Command)
@click.option("--number", default=None, metavar="NUMBER", help="Also link NUMBER, one of the account's numbers.")
@click.option(
    "--force",
    is_flag=True,
    help="Create a new application even if one is set up; replaces private.key and the .env lines.",
)
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="The new application's name in the dashboard.")
@with_appcontext
def setup_command(number: str | None, force: bool, name: str):
    """Create a Vonage application for this server and write VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY into .env.

    Its voice webhooks go to PUBLIC_URL, or else to the running ngrok tunnel. Run again, it changes nothing.
    """
    settings = current_app.config["SETTINGS"]
    try:
        client = account_client(settings)
        base = public_base(settings)
        lines = set_up(settings, client, Path(), base, name=name, number=number, force=force)
    except HelperError as error:
        raise CommandError(error.message, error.exit_code) from None
    for line in lines:
        click.echo(line)


def public_base(settings: Settings) -> str:
    """PUBLIC_URL, else the ngrok tunnel's https URL (with a warning if it forwards elsewhere); HelperError if neither."""
    if settings.public_url:
        return settings.public_url
    try:
        tunnel = find_tunnel(settings)
    except NgrokError as error:
        raise HelperError(
            f"PUBLIC_URL is not set, and {error.message}; or set PUBLIC_URL to this server's public base URL, for "
            "example PUBLIC_URL=https://voice.example.com",
            EXIT_SETTINGS,
        ) from None
    if tunnel.warning(settings.port):
        click.echo(f"warning: {tunnel.warning(settings.port)}", err=True)
    return tunnel.public_url
