"""`flask recordings`: the recordings in the call log; `check` lists those at risk; `fetch UUID` fetches one again
now, in this process (the server's recordings job would take it too: a lease makes it one attempt)."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import with_appcontext

from calllog.recordings import STATUSES, Recordings, duration_seconds
from calllog.schema import StorageError
from commands.cli import Command, CommandError, Group
from events import utc_timestamp
from outbound.recordings import LEASE_SECONDS, RecordingFetcher


def _recordings() -> Recordings:
    return Recordings(current_app.extensions["call_log"].database)


def _unavailable(error: StorageError) -> CommandError:
    return CommandError(f"the call log is unavailable: {error}; run it again when the database is back")


@click.group("recordings", cls=Group, invoke_without_command=True)
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only the recordings in this state.")
@click.pass_context
@with_appcontext
def recordings_group(ctx: click.Context, status: str | None):
    """List the latest recordings: state, when the webhook came, length, size, and where each is or why it is not."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        listed = _recordings().listed(status)
    except StorageError as error:
        raise _unavailable(error) from None
    if not listed:
        click.echo("no recordings yet: RECORD_CALLS=on records every connected call (docs/recordings.md)")
        return
    click.echo(f"{'RECORDING':38} {'STATUS':8} {'RECEIVED':24} {'LENGTH':>6} {'BYTES':>10}  WHERE / WHY")
    for recording in listed:
        seconds = duration_seconds(recording.start_time, recording.end_time)
        size = recording.bytes if recording.bytes is not None else recording.size
        where = recording.location if recording.status == "stored" else (recording.last_error or "not tried yet")
        click.echo(
            f"{recording.recording_uuid:38} {recording.status:8} {recording.received_at:24} "
            f"{'-' if seconds is None else f'{seconds}s':>6} {'-' if size is None else size:>10}  {where}"
        )


@recordings_group.command("check", cls=Command)
@with_appcontext
def check_command():
    """List what is at risk: recordings not stored within RECORDING_ALERT_AFTER, and recorded calls whose recording's
    webhook has not come that long after they ended. Exits 1 when anything is."""
    settings = current_app.config["SETTINGS"]
    now = time.time()
    since = utc_timestamp(now - settings.recording_alert_after.total_seconds())
    try:
        recordings = _recordings()
        not_stored = [
            recording
            for status in ("waiting", "failed")
            for recording in recordings.listed(status, limit=1000)
            if recording.received_at < since
        ]
        missed = recordings.missed(since)
    except StorageError as error:
        raise _unavailable(error) from None
    for recording in not_stored:
        why = recording.last_error or "not tried yet"
        click.echo(
            f"not stored: recording {recording.recording_uuid} of {recording.conversation_uuid} since {recording.received_at}: {why}"
        )
    for call in missed:
        click.echo(
            f"webhook missing: call {call['conversation_uuid']} was recorded and ended by {call['updated_at']}, and no "
            "recording's webhook has come (check the application's logs at Vonage; the recording is kept there 30 days)"
        )
    if not not_stored and not missed:
        click.echo("nothing at risk: every recording is stored, and every recorded call's webhook has come")
        return
    raise SystemExit(1)


@recordings_group.command("fetch", cls=Command)
@click.argument("recording_uuid")
@with_appcontext
def fetch_command(recording_uuid: str):
    """Fetch the recording RECORDING_UUID again now, whatever its state, and say how it went."""
    from outbound.recording_store import open_store

    settings = current_app.config["SETTINGS"]
    recordings = _recordings()
    try:
        if recordings.fetch_again(recording_uuid, time.time()) is None:
            raise CommandError(f"no recording {recording_uuid} in the call log; flask recordings lists them")
        taken = recordings.take_due(time.time(), LEASE_SECONDS, only=recording_uuid)
    except StorageError as error:
        raise _unavailable(error) from None
    if taken is None:
        click.echo(f"recording {recording_uuid} is being fetched by the server now; flask recordings shows how it went")
        return
    store = open_store(settings.recordings_location, settings.recordings_s3_endpoint, settings.instance_path)
    import threading

    from prometheus_client import CollectorRegistry

    fetcher = RecordingFetcher(settings, recordings, store, CollectorRegistry(), threading.Event())
    status = fetcher.fetch(taken)
    done = recordings.get(recording_uuid)
    if status == "stored" and done is not None:
        click.echo(f"stored: recording {recording_uuid} at {done.location} ({done.bytes} bytes, sha256 {done.sha256})")
        return
    raise CommandError(f"recording {recording_uuid} is {status}: {done.last_error if done else 'unknown'}")
