"""The call-log page: /calls, rendered on the server and refreshed in place by a little plain JavaScript."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flask import Blueprint, current_app, redirect, render_template, request

from calllog import access
from calllog.api import reader
from calllog.outcome import LABELS, call_outcome, leg_outcome
from calllog.queries import STATUS_FILTERS
from calllog.schema import StorageError
from events import epoch_seconds, leg_parties
from policy import looks_like_phone_number

bp = Blueprint("page", __name__, template_folder="templates", static_folder="static", static_url_path="/static")
bp.record_once(access.add_conversation_converter)
PAGE_SIZE = 50
# Each outcome's badge colour (calls.css): blue live, green done, amber busy, red failed, grey missed, purple refused.
BADGE_CLASSES = {
    "in_progress": "live",
    "completed": "done",
    "busy": "busy",
    "failed": "failed",
    "unanswered": "missed",
    "refused": "refused",
    "stale": "stale",
    "unknown": "unknown",
}


def badge_class(status: str | None) -> str:
    """The colour family of a leg status's badge."""
    return BADGE_CLASSES[leg_outcome(status)]


@bp.app_template_filter("badge")
def _badge(status):
    return badge_class(status)


def is_stale(updated_at: str | None, now: datetime, call_limit_seconds: int) -> bool:
    """Whether a call's last event or decision (`updated_at`, ISO 8601 UTC) is longer ago than a call may last."""
    return _age_over(updated_at, now, timedelta(seconds=call_limit_seconds))


# Each recording status's badge colour: stored done, waiting live, failed and refused red; at risk amber.
RECORDING_BADGES = {"stored": "done", "waiting": "live", "failed": "failed", "refused": "failed"}


def _age_over(iso: str | None, now: datetime, limit: timedelta) -> bool:
    """Whether the ISO 8601 time `iso` is more than `limit` before `now`; False for no time, or one unreadable."""
    then = epoch_seconds(iso) if iso else None
    return then is not None and now.timestamp() - then > limit.total_seconds()


def recording_at_risk(recording: dict, now: datetime, alert_after: timedelta) -> bool:
    """Whether a recording is not stored RECORDING_ALERT_AFTER after its webhook came: Vonage deletes it in 30 days."""
    return recording["status"] != "stored" and _age_over(recording.get("received_at"), now, alert_after)


def recording_missed(call: dict, now: datetime, alert_after: timedelta) -> bool:
    """Whether a call was recorded but no recording's webhook has come RECORDING_ALERT_AFTER after it ended (its last
    activity): Vonage sends that webhook once, and it may have been lost."""
    recorded = any(answer.get("recorded") and answer.get("connected") for answer in call["answers"])
    ended = not call["in_progress"]
    return recorded and ended and not call["recordings"] and _age_over(call["updated_at"], now, alert_after)


@bp.app_template_filter("recording_badge")
def _recording_badge(recording: dict) -> str:
    return "busy" if _recording_risk(recording) else RECORDING_BADGES.get(recording["status"], "unknown")


@bp.app_template_filter("recording_at_risk")
def _recording_risk(recording: dict) -> bool:
    return recording_at_risk(recording, datetime.now(UTC), current_app.config["SETTINGS"].recording_alert_after)


@bp.app_template_filter("recording_missed")
def _recording_missed(call: dict) -> bool:
    return recording_missed(call, datetime.now(UTC), current_app.config["SETTINGS"].recording_alert_after)


@bp.app_template_filter("outcome")
def _outcome(call) -> dict:
    settings = current_app.config["SETTINGS"]
    stale = is_stale(call.get("updated_at"), datetime.now(UTC), settings.call_limit)
    outcome = call_outcome((leg["status"] for leg in call["legs"]), call["answers"], stale)
    return {"name": outcome, "label": LABELS[outcome], "badge": BADGE_CLASSES[outcome]}


def call_shape(caller: str | None, callee: str | None) -> str:
    """Which way a call ran, from who called whom: "phone → app", "app → phone" or "app → app".

    A phone reaches this server only by calling the application's number, which rings an app user; any other
    caller is a Client SDK user (or unknown: a request with neither `from` nor `from_user`)."""
    if caller and looks_like_phone_number(caller):
        return "phone → app"
    if not callee:
        return "app"
    return f"app → {'phone' if looks_like_phone_number(callee) else 'app'}"


def timeline_rows(call: dict) -> list[dict]:
    """Every event of a call in one list, in time order, each with the leg it belongs to (None for none)."""
    rows = [{"leg": leg, **event} for leg in call["legs"] for event in leg["events"]]
    rows += [{"leg": None, **event} for event in call["other_events"]]
    return sorted(rows, key=lambda row: (str(row["timestamp"] or row["received_at"]), row["received_at"]))


# The worst first: an event shows the least advanced of its deliveries (calllog.deliveries' statuses).
FORWARD_ORDER = ("stopped", "failed", "pending", "delivered")


@bp.app_template_filter("forwarded")
def forwarded_text(forwarded: dict[str, str] | None) -> str | None:
    """Whether an event reached the user's app (FORWARD_URL): "delivered", or its least advanced delivery's status
    ("pending", "failed", "stopped"), with how many endpoints when several; None when it was not forwarded."""
    if not forwarded:
        return None
    statuses = list(forwarded.values())
    worst = min(statuses, key=lambda status: FORWARD_ORDER.index(status) if status in FORWARD_ORDER else 0)
    if len(statuses) == 1:
        return f"forwarded: {worst}"
    done = statuses.count("delivered")
    return f"forwarded: {worst} ({done} of {len(statuses)} endpoints delivered)"


def event_facts(payload) -> list[tuple[str, str]]:
    """The few fields of an event worth a glance, as (name, text) pairs; the payload's other fields stay folded."""
    if not isinstance(payload, dict):
        return []
    facts = []
    for key, label, unit in FACTS:
        value = payload.get(key)
        if value not in (None, "", {}, []):
            facts.append((label, f"{value}{unit}"))
    return facts


# (payload key, label, unit): Vonage reports rate (per minute) and price in euros.
FACTS = (
    ("duration", "duration", " s"),
    ("price", "price", " EUR"),
    ("rate", "rate", " EUR/min"),
    ("detail", "detail", ""),
    ("reason", "reason", ""),
    ("dtmf", "dtmf", ""),
    ("recording_url", "recording", ""),
)


@bp.app_template_filter("parties")
def _parties(leg) -> tuple[str | None, str | None]:
    return leg_parties(leg.get("direction"), leg.get("from"), leg.get("to"))


@bp.app_template_filter("utc")
def utc_text(iso: str) -> str:
    """An ISO 8601 UTC moment ("2026-11-24T10:36:21.301Z") as "2026-11-24 10:36:21 UTC"; other text as it is."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|\+00:00)", str(iso))
    return f"{match[1]} {match[2]} UTC" if match else str(iso)


@bp.app_template_filter("euros")
def euros(amount: str | None) -> str:
    """An exact sum in euros, to the cent, or to four places when under a euro ("0.0213 EUR")."""
    value = Decimal(amount or 0)
    places = Decimal("0.01") if abs(value) >= 1 or value == 0 else Decimal("0.0001")
    return f"{value.quantize(places)} EUR"


@bp.app_template_filter("seconds")
def duration_text(seconds: float | None) -> str:
    """A duration for people: "42 s", "3 min 05 s"; "—" for none."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


@bp.app_template_filter("facts")
def _facts(payload):
    return event_facts(payload)


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
    if request.endpoint == "page.static":
        return None
    wait = access.locked_out()
    if wait is not None:
        return render_template("too_many.html", seconds=wait), 429, {"Retry-After": str(wait)}
    in_address = access.query_token()
    if not access.check("page", in_address or access.bearer_token() or access.cookie_token()):
        return render_template("unauthorized.html"), 401
    if in_address is None:
        return None
    # Keep the token out of the address bar (and out of history) from now on: a cookie carries it.
    response = redirect(access.address_without_token())
    access.set_token_cookie(response, in_address)
    return response


@bp.after_request
def page_headers(response):
    return access.add_headers(response, access.PAGE_HEADERS)


def _filters() -> dict:
    return {"status": request.args.get("status", ""), "number": request.args.get("number", "").strip()}


@bp.get("/calls")
def calls_page():
    filters = _filters()
    cursor = request.args.get("cursor") or None
    partial = request.args.get("partial") == "list"
    template = "calls_list.html" if partial else "calls.html"
    # The totals are a pass over every call the filter matches: the page's one-second refresh of the list asks
    # for them (?summary=1) only when they may have changed (calls.js).
    with_summary = not partial or request.args.get("summary") == "1"
    kept = {name: value for name, value in filters.items() if value}
    shown = {
        "filters": filters,
        "kept": kept,
        "statuses": STATUS_FILTERS,
        "cursor": cursor,
        "with_summary": with_summary,
        "signatures_on": bool(current_app.config["SETTINGS"].signature_secrets),
        "call_control": current_app.config["SETTINGS"].call_control,
    }
    try:
        status, number = filters["status"] or None, filters["number"] or None
        calls, next_cursor = reader().list_calls(limit=PAGE_SIZE, cursor=cursor, status=status, number=number)
        summary = reader().summarize(status=status, number=number) if with_summary else None
    except StorageError as error:
        page = render_template(template, calls=[], problem=str(error), **shown)
        return page, 503, {"Retry-After": str(StorageError.retry_after)}
    except ValueError as error:
        return render_template(template, calls=[], problem=str(error), **shown), 400
    if not partial and shown["call_control"]:
        # The page's own script sends it in the Authorization header of each action: the action route takes the
        # token nowhere else (docs/call-control.md). Only a request that holds the token gets this page.
        shown["action_token"] = current_app.config["CALL_LOG_TOKEN"]
    return render_template(template, calls=calls, summary=summary, next_cursor=next_cursor, problem=None, **shown)


@bp.get("/calls/<conversation:conversation_uuid>/timeline", merge_slashes=False)
def timeline(conversation_uuid: str):
    try:
        call = reader().get_call(conversation_uuid)
    except StorageError as error:
        page = render_template("timeline.html", call=None, problem=str(error))
        return page, 503, {"Retry-After": str(StorageError.retry_after)}
    if call is None:
        return render_template("timeline.html", call=None, problem="no such conversation"), 404
    return render_template("timeline.html", call=call, rows=timeline_rows(call), problem=None)
