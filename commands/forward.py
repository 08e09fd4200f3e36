"""`flask forward`: the forwarding endpoints' state, sending deliveries again (replay), and a signed test message."""

from __future__ import annotations

import time
import uuid

import click
import requests
from flask import current_app
from flask.cli import with_appcontext

from calllog.deliveries import STATUSES, TEST_TYPE, DeliveryStore, forwarding
from calllog.schema import StorageError
from commands.cli import Command, CommandError, Group
from config import VARIABLES, parse_age
from events import utc_timestamp
from outbound.forwarding import post
from outbound.signing import Signer, envelope

SINCE_EXAMPLE = "for example --since 2h (hours, days or weeks: 2h, 1d, 2w)"


def _endpoints() -> tuple[str, ...]:
    endpoints = current_app.config["SETTINGS"].forward_urls
    if not endpoints:
        raise CommandError(
            f"FORWARD_URL is not set, so nothing is forwarded; for example {VARIABLES['FORWARD_URL'][2]}", 2
        )
    return endpoints


def _store() -> DeliveryStore:
    return DeliveryStore(current_app.extensions["call_log"].database)


def _unavailable(error: StorageError) -> CommandError:
    return CommandError(f"the call log is unavailable: {error}; run it again when the database is back")


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else utc_timestamp(seconds)


@click.group("forward", cls=Group, invoke_without_command=True)
@click.pass_context
@with_appcontext
def forward_group(ctx: click.Context):
    """Each FORWARD_URL endpoint: deliveries by status, failing since when, the last error."""
    if ctx.invoked_subcommand is not None:
        return
    endpoints = _endpoints()
    try:
        states = _store().endpoint_states(endpoints)
    except StorageError as error:
        raise _unavailable(error) from None
    for state in states:
        counts = "  ".join(f"{status} {state[status]}" for status in STATUSES)
        stopped = state["stopped"]
        note = f"  STOPPED since {_when(stopped[0])} ({stopped[1]})" if stopped else ""
        click.echo(
            f"{state['endpoint']}  {counts}  failing since {_when(state['failing_since'])}  "
            f"last error {state['last_error'] or '-'}{note}"
        )


@forward_group.command("replay", cls=Command)
@click.option("--since", "since", required=True, help="How far back: 2h, 1d, 2w.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only the deliveries in this status.")
@click.option("--endpoint", default=None, metavar="URL", help="Only the deliveries to this endpoint.")
@with_appcontext
def replay_command(since: str, status: str | None, endpoint: str | None):
    """Send again the deliveries made since then (with their own webhook-id, so a receiver that keeps them drops
    the ones it has); an endpoint stopped by 410 Gone is sent to again."""
    try:
        age = parse_age(since)
    except ValueError as error:
        raise CommandError(f"--since: {error}; {SINCE_EXAMPLE}", exit_code=2) from None
    now = time.time()
    since = now - age.total_seconds()
    settings = current_app.config["SETTINGS"]
    store = _store()
    try:
        count = store.replay(since, status, endpoint, now)
        made = 0
        # An endpoint added since, or forwarding turned on since: the deliveries never made are made now.
        endpoints = tuple(url for url in settings.forward_urls if endpoint in (None, url))
        if status is None and endpoints:
            made = store.add_missing(forwarding(endpoints, settings.forward_events), utc_timestamp(since), now)
    except StorageError as error:
        raise _unavailable(error) from None
    to = f" to {endpoint}" if endpoint else ""
    which = f" {status}" if status else ""
    click.echo(f"replaying {count}{which} deliveries made since {utc_timestamp(since)}{to}")
    if made:
        click.echo(f"sending {made} more never made before (FORWARD_URL or FORWARD_EVENTS changed since{to})")


@forward_group.command("test", cls=Command)
@with_appcontext
def test_command():
    """Send one signed test message to each endpoint, now, and say what each answered."""
    settings = current_app.config["SETTINGS"]
    signer = Signer(settings.forward_secrets)
    failed = 0
    with requests.Session() as session:
        for endpoint in _endpoints():
            webhook_id = f"test_{uuid.uuid4().hex}"
            now = time.time()
            body = envelope(TEST_TYPE, utc_timestamp(now), {"message": "a test from flask forward test"})
            started = time.perf_counter()
            answer = post(session, endpoint, body, signer.headers(webhook_id, body, now), settings.forward_timeout)
            took = (time.perf_counter() - started) * 1000
            if answer.error is None:
                click.echo(f"ok: {endpoint} answered {answer.status} in {took:.0f} ms (webhook-id {webhook_id})")
            else:
                failed += 1
                click.echo(f"failed: {endpoint} {answer.error}")
    if failed:
        raise SystemExit(1)
