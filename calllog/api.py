"""The call-log API (/api/calls, token-protected). Its refusals are werkzeug's HTTP errors, with the message for
the person or script that made the request: the app's error handler (edge/errors.py) writes each as JSON."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, TooManyRequests, Unauthorized

from calllog import access
from calllog.queries import CallLogReader

bp = Blueprint("api", __name__)
bp.record_once(access.init_app)
bp.record_once(access.add_conversation_converter)
MAX_PAGE = 200


def reader() -> CallLogReader:
    return current_app.extensions["call_log"].reader


def token_refusal(surface: str, needs: str, bearer_hint: str = "", cookie: bool = True) -> HTTPException | None:
    """None when the request may read the call log; else the error that says why not: 429 while its address is
    locked out for wrong tokens, 401 for a `?token=` (taken only by the page), or for a token missing or wrong
    (`needs` starts the message, `bearer_hint` follows the header's name). The token is the Authorization header's,
    else (`cookie`) the page's cookie."""
    wait = access.locked_out()
    if wait is not None:
        return TooManyRequests(access.too_many_message(wait), retry_after=wait)
    if "token" in request.args:
        return Unauthorized(access.QUERY_TOKEN_REFUSED.format(hint=bearer_hint))
    given = access.bearer_token() or (access.cookie_token() if cookie else None)
    if access.check(surface, given):
        return None
    return Unauthorized(
        f"{needs}: send 'Authorization: Bearer <token>'{bearer_hint}; the server prints it at start-up (CALL_LOG_TOKEN)"
    )


@bp.before_request
def require_token():
    refusal = token_refusal("api", "the call log needs its token")
    if refusal is not None:
        raise refusal


@bp.after_request
def api_headers(response):
    return access.add_headers(response, access.API_HEADERS)


@bp.get("/api/calls")
def list_calls():
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}, e.g. ?limit=20")
    try:
        calls, next_cursor = reader().list_calls(
            limit=limit,
            cursor=request.args.get("cursor") or None,
            status=request.args.get("status") or None,
            number=request.args.get("number") or None,
        )
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return {"calls": calls, "next": next_cursor}


@bp.get("/api/calls/<conversation:conversation_uuid>", merge_slashes=False)
def get_call(conversation_uuid: str):
    call = reader().get_call(conversation_uuid)
    if call is None:
        raise NotFound(f"no conversation {conversation_uuid} in the call log")
    return call
