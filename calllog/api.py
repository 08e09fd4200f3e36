"""The call-log API (/api/calls, token-protected) and the `flask calls` command."""

from __future__ import annotations

import hmac
import json

import click
from flask import Blueprint, current_app, jsonify, request
from flask.cli import with_appcontext

from calllog.queries import STATUS_FILTERS, CallLogReader
from calllog.schema import StorageError
from cli import Command, CommandError

bp = Blueprint("api", __name__)
MAX_PAGE = 200
# The most conversations `flask calls` prints: more is an export, not a table to read.
MAX_LISTED = 10_000
RETRY_AFTER_SECONDS = 5


def reader() -> CallLogReader:
    return current_app.extensions["call_log"].reader


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time check of a call-log token."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def request_token() -> str | None:
    """The token a request carries: `Authorization: Bearer <token>`, else `?token=`, else the call-log page's cookie."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.args.get("token") or request.cookies.get("call_log_token")


def token_refusal(needs: str, bearer_hint: str = ""):
    """None when the request carries the call log's token; else a 401 whose message starts with `needs` and says
    how to send the token (`bearer_hint` follows the header's name)."""
    if token_matches(request_token(), current_app.config["CALL_LOG_TOKEN"]):
        return None
    return jsonify(
        error=f"{needs}: add 'Authorization: Bearer <token>'{bearer_hint} or '?token=<token>'; "
        "the server prints it at start-up (CALL_LOG_TOKEN)"
    ), 401


@bp.before_request
def require_token():
    return token_refusal("the call log needs its token")


@bp.errorhandler(StorageError)
def storage_failed(error: StorageError):
    response = jsonify(error=f"the call log is unavailable: {error}; try again in a moment")
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@bp.get("/api/calls")
def list_calls():
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        return jsonify(error=f"limit must be a whole number from 1 to {MAX_PAGE}, e.g. ?limit=20"), 400
    try:
        calls, next_cursor = reader().list_calls(
            limit=limit,
            cursor=request.args.get("cursor") or None,
            status=request.args.get("status") or None,
            number=request.args.get("number") or None,
        )
    except ValueError as error:
        return jsonify(error=str(error)), 400
    return {"calls": calls, "next": next_cursor}


@bp.get("/api/calls/<conversation_uuid>")
def get_call(conversation_uuid: str):
    call = reader().get_call(conversation_uuid)
    if call is None:
        return jsonify(error=f"no conversation {conversation_uuid} in the call log"), 404
    return call


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
        raise CommandError(f"the call log is unavailable: {error}") from None
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
                label = "told why" if answer["route"] == "outcome" else "refused"
                who = f"{answer['caller'] or '?'} -> {answer['requested'] or '?'}"
                rows.append(f"  {label}: {who}: {answer['reason']}")
        for leg in call["legs"]:
            rows.append(
                f"  {leg['direction'] or '-':8} {leg['from'] or '-':16} {leg['to'] or '-':16} {leg['status'] or '-':12} "
                f"{'' if leg['duration'] is None else leg['duration']:>5} {leg['price'] or '-':>11}"
            )
    return rows
