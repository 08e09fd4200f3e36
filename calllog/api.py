"""The call-log API (/api/calls, token-protected)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from calllog import access
from calllog.queries import CallLogReader
from calllog.schema import StorageError

bp = Blueprint("api", __name__)
bp.record_once(access.init_app)
bp.record_once(access.add_conversation_converter)
MAX_PAGE = 200
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
