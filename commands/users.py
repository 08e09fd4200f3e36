"""`flask users`: the application's Client SDK users at Vonage (list, create, delete, sync); the work is
vonage_helper.users'."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from calllog import client_users
from calllog.schema import StorageError
from commands.cli import Command, CommandError, Group
from vonage_helper.clients import application_client
from vonage_helper.errors import HelperError
from vonage_helper.users import create_user, delete_user, list_users, sync_users


def _client():
    try:
        return application_client(current_app.config["SETTINGS"])
    except HelperError as error:
        raise CommandError(error.message, error.exit_code) from None


def _database():
    return current_app.extensions["call_log"].database


@click.group("users", cls=Group, invoke_without_command=True)
@click.pass_context
@with_appcontext
def users_group(ctx: click.Context):
    """List the application's Client SDK users at Vonage: name, id, display name, last login token issued here."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        users = list_users(_client())
    except HelperError as error:
        raise CommandError(error.message, error.exit_code) from None
    try:
        last = client_users.last_tokens(_database())
    except StorageError as error:
        click.echo(f"warning: the call log cannot be read, so no last token is shown: {error}", err=True)
        last = {}
    if not users:
        click.echo("no users yet: flask users create NAME, or flask users sync")
        return
    click.echo(f"{'NAME':24} {'ID':40} {'DISPLAY NAME':24} LAST TOKEN HERE")
    for user in sorted(users, key=lambda user: user.name):
        click.echo(f"{user.name:24} {user.id:40} {user.display_name or '-':24} {last.get(user.name, '-')}")


@users_group.command("create", cls=Command)
@click.argument("name")
@click.option("--display-name", default=None, metavar="TEXT", help="The name the app shows for the user.")
@with_appcontext
def create_command(name: str, display_name: str | None):
    """Create the user NAME at Vonage."""
    try:
        user = create_user(_client(), name, display_name)
    except HelperError as error:
        raise CommandError(error.message, error.exit_code) from None
    click.echo(f"created {user.name} ({user.id})")


@users_group.command("delete", cls=Command)
@click.argument("name")
@with_appcontext
def delete_command(name: str):
    """Delete the user NAME at Vonage."""
    try:
        user = delete_user(_client(), name)
    except HelperError as error:
        raise CommandError(error.message, error.exit_code) from None
    try:
        client_users.forget(_database(), name)
    except StorageError:
        pass  # only this server's note of the user: a later login makes it again
    click.echo(f"deleted {user.name} ({user.id})")


@users_group.command("sync", cls=Command)
@click.option("--dry-run", is_flag=True, help="Say what would be created; create nothing.")
@with_appcontext
def sync_command(dry_run: bool):
    """Create the users INBOUND_ROUTES, INBOUND_DEFAULT_USER and CALLABLE_USERS name; list those no setting names."""
    try:
        lines = sync_users(current_app.config["SETTINGS"], _client(), dry_run)
    except HelperError as error:
        raise CommandError(error.message, error.exit_code) from None
    for line in lines:
        click.echo(line)
