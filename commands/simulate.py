"""`flask simulate`: play one whole signed call, or many at once, against a running server."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import with_appcontext

from commands.cli import Command, check_base_url
from events import RING_OUTCOMES
from simulator.client import Simulator
from simulator.load import run_load
from simulator.model import (
    ANSWER_DEADLINE_SECONDS,
    APPLICATION_NUMBER,
    INBOUND_CALLER,
    MAX_ANSWER_TIMEOUT_SECONDS,
    REGION_URL,
    SCENARIOS,
    CallResult,
    Scenario,
)


def transcript(result: CallResult, method: str) -> list[str]:
    """A readable account of one simulated call."""
    answer = result.answer
    lines = [f"answer  {method} /voice/answer  ->  {answer.status or 'no response'}  {answer.latency_ms:.1f} ms"]
    if result.ncco is not None:
        lines.append("NCCO    " + json.dumps(result.ncco))
        lines.append("plan    " + result.plan)
    for sent, event in enumerate(result.events, start=1):
        lines.append(f"event   {event.what:24} ->  {event.status or 'no response'}  {event.latency_ms:.1f} ms")
        if result.told_why is not None and sent == result.told_why_after:
            lines.append("NCCO    " + json.dumps(result.told_why))
            lines.append("told    " + result.told_why_plan)
    lines.append(f"call    {result.conversation_uuid}")
    for leg, who in result.held_legs:
        lines.append(f"held    {who:6} leg {leg}")
    if result.problems:
        lines += [f"PROBLEM {problem}" for problem in result.problems]
    elif result.held_legs:
        caller = result.held_legs[0][0]
        lines.append(f"ok: the call is answered and held open; end it with: flask hangup {caller}")
    else:
        lines.append("ok: the server handled the whole call as Vonage needs")
    return lines


def default_callee(scenario: str, settings) -> str:
    """Whom a scenario calls when the command names nobody: the tutorial's number, the application's number
    (the first of INBOUND_ROUTES, else VONAGE_NUMBER), or a user app users may call (CALLABLE_USERS)."""
    if scenario == "inbound":
        routed = [number for number, _ in settings.inbound_routes]
        return (routed or [settings.vonage_number or APPLICATION_NUMBER])[0]
    if scenario == "app-to-app":
        return min(settings.callable_users - {"*"}, default="Bob")
    return "447700900000"


def _timeout_seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0 < value <= MAX_ANSWER_TIMEOUT_SECONDS:  # written so that NaN fails it too
        raise click.BadParameter(f"{value} is not a number of seconds above 0 and up to {MAX_ANSWER_TIMEOUT_SECONDS}")
    return value


@click.command("simulate", cls=Command)
@click.argument("to", required=False)
@click.option(
    "--scenario",
    type=click.Choice(SCENARIOS),
    default="outbound",
    show_default=True,
    help="The call: an app user calls TO (a number); a phone calls the application's number TO; an app user calls "
    "the user TO; an app user calls TO, who is busy, and is told why; an app user's call to TO is recorded, and its "
    "recording's webhook comes after it ends; an app user calls TO, who answers, and the call is held open until it "
    "is hung up (flask hangup).",
)
@click.option(
    "--url",
    default=None,
    callback=check_base_url,
    help="The webhook server's base URL. Default: this server, http://127.0.0.1:PORT.",
)
@click.option(
    "--outcome",
    type=click.Choice(RING_OUTCOMES),
    default="answered",
    show_default=True,
    help="How the callee's leg ends.",
)
@click.option(
    "--duration", type=click.IntRange(0, 7200), default=5, show_default=True, help="Seconds the answered call lasts."
)
@click.option("--user", default="Alice", show_default=True, help="The Client SDK user who calls.")
@click.option("--caller", default=INBOUND_CALLER, show_default=True, help="The phone number that calls (inbound).")
@click.option(
    "--method",
    type=click.Choice(["GET", "POST"], case_sensitive=False),
    default="GET",
    show_default=True,
    help="How the answer request is sent (the application's answer_method).",
)
@click.option(
    "--calls", type=click.IntRange(1, 100_000), default=1, show_default=True, help="Load mode: how many calls."
)
@click.option(
    "--concurrency", type=click.IntRange(1, 256), default=1, show_default=True, help="Load mode: calls at once."
)
@click.option(
    "--answer-timeout",
    type=float,
    callback=_timeout_seconds,
    default=ANSWER_DEADLINE_SECONDS,
    show_default=True,
    help="Seconds to wait for the answer URL.",
)
@click.option(
    "--region-url",
    default=REGION_URL,
    show_default=True,
    help="The region_url the answer request names: where the call is acted on (flask hangup).",
)
@click.option(
    "--recording-url",
    default=None,
    help="The recorded scenario: where its recording's webhook says the file is (default: on api.nexmo.com).",
)
@click.option(
    "--recording-size", type=click.IntRange(0), default=None, help="The recorded scenario: the file's size in bytes."
)
@with_appcontext
def simulate_command(
    to,
    scenario,
    url,
    outcome,
    duration,
    user,
    caller,
    method,
    calls,
    concurrency,
    answer_timeout,
    region_url,
    recording_url,
    recording_size,
):
    """Play Vonage against a webhook server: one whole call to TO, or many (--calls)."""
    settings = current_app.config["SETTINGS"]
    base_url = url or f"http://127.0.0.1:{settings.port}"
    secret = settings.signature_secrets[0] if settings.signature_secrets else None
    simulator = Simulator(base_url, secret, method, answer_timeout=answer_timeout)
    to = to or default_callee(scenario, settings)
    call = Scenario(
        scenario,
        to,
        user,
        caller,
        outcome,
        duration,
        region_url=region_url,
        recording_url=recording_url,
        recording_size=recording_size,
    )
    if calls > 1 or concurrency > 1:
        report = run_load(simulator, to, calls, concurrency, scenario=call)
        click.echo(
            f"load: {calls} calls ({scenario}) to {to} against {base_url}, {concurrency} at a time"
            + (", signed" if secret else "")
        )
        for line in report.lines():
            click.echo(line)
        if report.failures:
            raise SystemExit(1)
        return
    who = caller if call.from_phone else user
    signed = " (signed)" if secret else ""
    click.echo(f"simulating a call ({scenario}) from {who} to {to} against {base_url}{signed}")
    result = simulator.play(call)
    for line in transcript(result, method.upper()):
        click.echo(line)
    if not result.ok:
        raise SystemExit(1)
