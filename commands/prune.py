"""`flask prune`: remove the call log's conversations older than an age, now, and say how much went."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import with_appcontext

from calllog.retention import count_prunable, cutoff_before, described, prune
from calllog.schema import StorageError
from commands.cli import Command, CommandError
from config import VARIABLES, parse_age

OPTION_EXAMPLE = "for example --older-than 30d (hours, days or weeks: 12h, 30d, 2w)"


@click.command("prune", cls=Command)
@click.option(
    "--older-than", "older_than", default=None, help="An age such as 30d, 12h or 2w; default CALL_LOG_RETENTION."
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed, and remove nothing.")
@with_appcontext
def prune_command(older_than: str | None, dry_run: bool):
    """Remove calls whose latest event or answer is older than an age, with all their rows."""
    if older_than is not None:
        try:
            age = parse_age(older_than)
        except ValueError as error:
            raise CommandError(f"--older-than: {error}; {OPTION_EXAMPLE}", exit_code=2) from None
    else:
        age = current_app.config["SETTINGS"].call_log_retention
        if age is None:
            raise CommandError(
                f"no age to prune: give --older-than 30d, or set {VARIABLES['CALL_LOG_RETENTION'][2]}", exit_code=2
            )
    database = current_app.extensions["call_log"].database
    cutoff = cutoff_before(age, time.time())
    try:
        removed = count_prunable(database, cutoff) if dry_run else prune(database, cutoff)
    except StorageError as error:
        raise CommandError(f"the call log is unavailable: {error}; run it again when the database is back") from None
    click.echo(f"{'would remove' if dry_run else 'removed'} {described(removed, age, cutoff)}")
