"""`flask push android|ios`: upload the credentials Vonage rings a backgrounded app with (vonage_helper.push)."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from commands.cli import Command, CommandError, Group
from vonage_helper.clients import application_client
from vonage_helper.errors import HelperError
from vonage_helper.push import android_credentials, ios_credentials, upload_push_credentials


@click.group("push", cls=Group)
def push_group():
    """Upload the push credentials Vonage needs to ring the app while it is in the background."""


def _upload(platform: str, read) -> None:
    settings = current_app.config["SETTINGS"]
    try:
        body = read()
        upload_push_credentials(application_client(settings), settings.application_id, platform, body)
    except HelperError as error:
        raise CommandError(error.message, error.exit_code) from None
    click.echo(f"uploaded the {platform} push credentials to application {settings.application_id}")
    click.echo("note: Vonage checks nothing it is sent; ring the app while it is in the background to be sure")


@push_group.command("android", cls=Command)
@click.option("--service-account", "service_account", required=True, metavar="FILE", help="Firebase's key (JSON).")
@with_appcontext
def android_command(service_account: str):
    """Upload a Firebase service-account key, for Firebase Cloud Messaging."""
    _upload("android", lambda: android_credentials(Path(service_account)))


@push_group.command("ios", cls=Command)
@click.option("--certificate", required=True, metavar="FILE.p12", help="The APNs certificate and key, as a .p12.")
@click.option("--password", default=None, help="The .p12 file's password, if it has one.")
@with_appcontext
def ios_command(certificate: str, password: str | None):
    """Upload an APNs certificate (.p12), for Apple's push service."""
    _upload("ios", lambda: ios_credentials(Path(certificate), password))
