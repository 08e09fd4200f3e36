"""The call-log API (/api/calls, token-protected) and the `flask calls` command."""

from __future__ import annotations

import json

import click
from flask import Blueprint, current_app, jsonify, request
from flask.cli import with_appcontext

from calllog import access
from calllog.queries import STATUS_FILTERS, CallLogReader
from calllog.schema import StorageError
from cli import Command, CommandError

bp = Blueprint("api", __name__)
bp.record_once(access.init_app)
bp.record_once(access.add_conversation_converter)
MAX_PAGE = 200
# The most conversations `flask calls` prints: more is an export, not a table to read.
MAX_LISTED = 10_000
RETRY_AFTER_SECONDS = 5


def reader() -> CallLogReader:
    return current_app.extensions["call_log"].reader


def token_refusal(surface: str, needs: str, bearer_hint: str = "", cookie: bool = True):
    """None when the request may read the call log; else the JSON answer that says why not: 429 while its address
    is locked out for wrong tokens, 401 for a `?token=` (taken only by the page), or for a token missing or wrong
    (`needs` starts the message, `bearer_hint` follows the header's name). The token is the Authorization header's,
    else (`cookie`) the page's cookie."""
    wait = access.locked_out()
    if wait is not None:
        response = jsonify(error=access.too_many_message(wait))
        response.status_code = 429
        response.headers["Retry-After"] = str(wait)
        return response
    if "token" in request.args:
        return jsonify(error=access.QUERY_TOKEN_REFUSED.format(hint=bearer_hint)), 401
    given = access.bearer_token() or (access.cookie_token() if cookie else None)
    if access.check(surface, given):
        return None
    return jsonify(
        error=f"{needs}: send 'Authorization: Bearer <token>'{bearer_hint}; "
        "the server prints it at start-up (CALL_LOG_TOKEN)"
    ), 401


@bp.before_request
def require_token():
    return token_refusal("api", "the call log needs its token")


@bp.after_request
def api_headers(response):
    return access.add_headers(response, access.API_HEADERS)


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


@bp.get("/api/calls/<conversation:conversation_uuid>", merge_slashes=False)
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
