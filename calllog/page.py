"""The call-log page: /calls, rendered on the server and refreshed in place by a little plain JavaScript."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from calllog.api import RETRY_AFTER_SECONDS, reader, request_token, token_matches
from calllog.legs import IN_PROGRESS, STATUS_RANK
from calllog.schema import StorageError
from ncco import looks_like_phone_number

bp = Blueprint("page", __name__, template_folder="templates", static_folder="static", static_url_path="/static")
COOKIE = "call_log_token"
PAGE_SIZE = 50
# The filter's choices: the two summaries the call log offers, then every status a leg can end up in.
STATUSES = ("in_progress", "refused", *STATUS_RANK)


def badge_class(status: str | None) -> str:
    """The colour family of a status badge."""
    if status in IN_PROGRESS:
        return "live"
    if status == "completed":
        return "done"
    if status is None:
        return "unknown"
    return "bad"


@bp.app_template_filter("badge")
def _badge(status):
    return badge_class(status)


def call_shape(caller: str | None, callee: str | None) -> str:
    """Which way a call ran, from who called whom: "phone → app", "app → phone" or "app → app".

    A phone reaches this server only by calling the application's number, which rings an app user; any other
    caller is a Client SDK user (or unknown: a request with neither `from` nor `from_user`)."""
    if caller and looks_like_phone_number(caller):
        return "phone → app"
    if not callee:
        return "app"
    return f"app → {'phone' if looks_like_phone_number(callee) else 'app'}"


@bp.app_template_filter("shape")
def _shape(answer) -> str:
    return call_shape(answer["caller"], answer["callee"] or answer["requested"])


@bp.app_template_filter("pretty")
def _pretty(payload) -> str:
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    # An unpaired surrogate (sent as a JSON \udfff escape) cannot go out as UTF-8: show the escape instead.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@bp.before_request
def require_token():
    # The stylesheet and script are public: the 401 page uses them too.
    if request.endpoint == "page.static" or token_matches(request_token(), current_app.config["CALL_LOG_TOKEN"]):
        return None
    return render_template("unauthorized.html"), 401


def _filters() -> dict:
    return {"status": request.args.get("status", ""), "number": request.args.get("number", "").strip()}


@bp.get("/calls")
def calls_page():
    if "token" in request.args:
        # Keep the token out of the address bar (and out of history) from now on: a cookie carries it.
        kept = {name: value for name, value in _filters().items() if value}
        response = redirect(url_for("page.calls_page", **kept))
        response.set_cookie(COOKIE, request.args["token"], httponly=True, samesite="Strict", secure=request.is_secure)
        return response
    filters = _filters()
    template = "calls_list.html" if request.args.get("partial") == "list" else "calls.html"
    try:
        status, number = filters["status"] or None, filters["number"] or None
        calls, _ = reader().list_calls(limit=PAGE_SIZE, status=status, number=number)
    except StorageError as error:
        page = render_template(template, calls=[], filters=filters, statuses=STATUSES, problem=str(error))
        return page, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    except ValueError as error:
        return render_template(template, calls=[], filters=filters, statuses=STATUSES, problem=str(error)), 400
    return render_template(template, calls=calls, filters=filters, statuses=STATUSES, problem=None)


@bp.get("/calls/<conversation_uuid>/timeline")
def timeline(conversation_uuid: str):
    try:
        call = reader().get_call(conversation_uuid)
    except StorageError as error:
        page = render_template("timeline.html", call=None, problem=str(error))
        return page, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if call is None:
        return render_template("timeline.html", call=None, problem="no such conversation"), 404
    return render_template("timeline.html", call=call, problem=None)
