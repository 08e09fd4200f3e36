"""`flask live` (the legs in progress) and `flask hangup`, `mute`, `unmute`, `say`, `transfer`: acting on a leg
through the same controller as POST /api/calls/<leg>/actions (outbound/call_control.py)."""

from __future__ import annotations

import logging
from dataclasses import replace

import click
from flask import current_app
from flask.cli import with_appcontext

from commands.cli import Command, CommandError
from runtime.logs import LOGGER_NAME

OFF = "acting on calls is off: set CALL_CONTROL=on (with VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY)"


@click.command("live", cls=Command)
@with_appcontext
def live_command():
    """List the legs in progress: leg, direction, from, to, status, since."""
    from calllog import StorageError
    from calllog.call_actions import live_legs

    try:
        legs = live_legs(current_app.extensions["call_log"].database)
    except StorageError as error:
        raise CommandError(f"the call log is unavailable: {error}") from None
    if not legs:
        click.echo("no calls in progress")
        return
    click.echo(f"  {'LEG':36} {'DIR':8} {'FROM':16} {'TO':16} {'STATUS':10} SINCE")
    for leg in legs:
        row = (leg.direction or "-", leg.from_number or "-", leg.to_number or "-", leg.status or "-")
        click.echo(f"  {leg.uuid:36} {row[0]:8} {row[1]:16} {row[2]:16} {row[3]:10} {leg.since or '-'}")


def act(leg: str, action: str, **fields: str) -> None:
    """Do `action` to `leg`: one line on success, else one `error:` line (CommandError)."""
    from calllog import StorageError
    from ncco import CONNECT_WEBHOOK
    from outbound.call_requests import CallRules

    controller = current_app.extensions.get("call_control")
    if controller is None:
        raise CommandError(OFF)
    settings = current_app.config["SETTINGS"]
    voice = current_app.extensions["voice"]
    plan = voice.plan
    if not plan.event_url:
        # As the answer URL builds it for a request that reached this server at HOST:PORT (PUBLIC_URL unset).
        plan = replace(plan, event_url=f"http://{settings.host}:{settings.port}{CONNECT_WEBHOOK.path}")

    # The command's own line says what came of it (and the timeline keeps it): the controller's log lines would say
    # it twice on the same terminal.
    logging.getLogger(f"{LOGGER_NAME}.call_control").setLevel(logging.ERROR)

    def throttled(seconds: float) -> None:
        click.echo(f"throttled, retrying in {seconds:g} s", err=True)

    try:
        result = controller.act(
            leg, action, fields, CallRules(voice.policy, plan, voice.routing), "command line", throttled
        )
    except StorageError as error:
        raise CommandError(f"the call log is unavailable: {error}") from None
    if not result.accepted:
        raise CommandError(result.message)
    click.echo(f"{action} on leg {leg}: {result.message}")


@click.command("hangup", cls=Command)
@click.argument("leg")
@with_appcontext
def hangup_command(leg: str):
    """Hang up the leg LEG of a call in progress."""
    act(leg, "hangup")


@click.command("mute", cls=Command)
@click.argument("leg")
@with_appcontext
def mute_command(leg: str):
    """Mute LEG: the others no longer hear it."""
    act(leg, "mute")


@click.command("unmute", cls=Command)
@click.argument("leg")
@with_appcontext
def unmute_command(leg: str):
    """Unmute LEG."""
    act(leg, "unmute")


@click.command("say", cls=Command)
@click.argument("leg")
@click.argument("text")
@with_appcontext
def say_command(leg: str, text: str):
    """Speak TEXT into LEG, in the TTS_LANGUAGE and TTS_STYLE voice."""
    act(leg, "say", text=text)


@click.command("transfer", cls=Command)
@click.argument("leg")
@click.argument("to")
@with_appcontext
def transfer_command(leg: str, to: str):
    """Transfer LEG to TO, a number (through the destination policy) or an app user (CALLABLE_USERS)."""
    act(leg, "transfer", to=to)
