"""`flask calls`: the recent call log as a table in the terminal, or as JSON for scripts."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from calllog.api import reader
from calllog.queries import STATUS_FILTERS
from calllog.schema import StorageError
from commands.cli import Command, CommandError
from ncco import TOLD_WHY_ROUTE

# The most conversations `flask calls` prints: more is an export, not a table to read.
MAX_LISTED = 10_000


@click.command("calls", cls=Command)
@click.option(
    "--limit", type=click.IntRange(1, MAX_LISTED), default=20, show_default=True, help="How many conversations to show."
)
@click.option(
    "--status",
    type=click.Choice(STATUS_FILTERS),
    default=None,
    help="Only conversations with a leg in this status, in progress, or refused.",
)
@click.option("--number", default=None, help="Only conversations to or from this number.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@with_appcontext
def calls_command(limit: int, status: str | None, number: str | None, as_json: bool):
    """Show the recent call log."""
    try:
        calls, _ = reader().list_calls(limit=limit, status=status, number=number)
    except StorageError as error:
        raise CommandError(f"the call log is unavailable: {error}; check DATABASE_URL") from None
    if as_json:
        click.echo(json.dumps(calls, indent=2))
        return
    if not calls:
        click.echo("No calls yet. Point a Vonage application here, or try: flask ncco 447700900000")
        return
    for row in call_table(calls):
        click.echo(row)


def call_table(calls: list[dict]) -> list[str]:
    """The call log as aligned text rows: one per leg, under a line per conversation."""
    header = f"  {'DIR':8} {'FROM':16} {'TO':16} {'STATUS':12} {'SECS':>5} {'PRICE':>11}"
    rows = [header]
    for call in calls:
        price = call["total_price"] or "-"
        rows.append(f"{call['started_at']}  {call['conversation_uuid']}  total {price}")
        for answer in call["answers"]:
            if not answer["connected"]:
                label = "told why" if answer["route"] == TOLD_WHY_ROUTE else "refused"
                who = f"{answer['caller'] or '?'} -> {answer['requested'] or '?'}"
                rows.append(f"  {label}: {who}: {answer['reason']}")
        for leg in call["legs"]:
            rows.append(
                f"  {leg['direction'] or '-':8} {leg['from'] or '-':16} {leg['to'] or '-':16} {leg['status'] or '-':12} "
                f"{'' if leg['duration'] is None else leg['duration']:>5} {leg['price'] or '-':>11}"
            )
    return rows
