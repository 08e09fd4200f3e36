"""The voice webhooks Vonage calls: /voice/answer and /voice/fallback answer with an NCCO, /voice/event stores events.

Every request to them passes the signature check first (when VONAGE_SIGNATURE_SECRET is set); then each route
reads the fields, decides, records and responds.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field, replace

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from calllog import CallLog, StorageError
from calllog.rows import answer_row, event_row
from config import Settings
from events import log_event
from http_errors import error_response
from logs import utc_timestamp
from ncco import (
    OUTBOUND,
    AnswerDecision,
    CallPlan,
    CallRouting,
    DestinationPolicy,
    ToldWhy,
    decide_answer,
    refusal_ncco,
    told_why,
)
from payloads import Payload, PayloadError
from signatures import SignatureError, check_payload, verify_token

ANSWER_URL = "/voice/answer"
EVENT_URL = "/voice/event"
# Where a connect's events go. Apart from the application's event URL, so that only Vonage's synchronous request
# about a connect's outcome is answered with an NCCO: the application's event URL answers every event 204.
CONNECT_EVENT_URL = "/voice/event/connect"
FALLBACK_URL = "/voice/fallback"
SIGNATURE_RETRY_AFTER_SECONDS = 5
STORAGE_RETRY_AFTER_SECONDS = 5

bp = Blueprint("voice", __name__)


@dataclass(frozen=True)
class Voice:
    """What the voice routes work with, set up once by the app factory."""

    settings: Settings
    call_log: CallLog
    log: logging.Logger
    policy: DestinationPolicy = field(init=False)
    plan: CallPlan = field(init=False)
    routing: CallRouting = field(init=False)

    def __post_init__(self):
        # Built once: the settings never change while the server runs.
        object.__setattr__(self, "policy", self.settings.destination_policy)
        object.__setattr__(self, "routing", self.settings.call_routing)
        plan = self.settings.call_plan
        if self.settings.public_url:
            plan = replace(plan, event_url=self.settings.public_url + CONNECT_EVENT_URL)
        object.__setattr__(self, "plan", plan)


def init_app(app: Flask, settings: Settings, call_log: CallLog, log: logging.Logger) -> None:
    app.extensions["voice"] = Voice(settings, call_log, log)
    app.register_blueprint(bp)


def _voice() -> Voice:
    return current_app.extensions["voice"]


@bp.before_request
def check_signature():
    """Refuse a request that is not signed by Vonage, before anything of it is read, decided or stored."""
    voice = _voice()
    secrets = voice.settings.signature_secrets
    if not secrets:
        return None
    # One proxy lookup instead of one per attribute (Flask's documented way to reach the request object).
    req = request._get_current_object()
    try:
        # The token first: the body of a request nobody signed is never waited for.
        claims = verify_token(req.authorization_header, secrets, time.time(), voice.settings.signature_max_age)
        check_payload(claims, req.method, req.body, req.query_pairs)
    except SignatureError as refusal:
        return _refuse(voice.log, refusal.status, refusal.reason)
    except HTTPException as error:
        # The body could not be read, so the request cannot be checked: refused like a bad signature.
        return _refuse(voice.log, error.code or 400, error.description or "the request could not be read")
    req.signature_verified = True
    return None


def _refuse(log: logging.Logger, status: int, reason: str):
    path = request.path
    log.warning("signature refused on %s (%s): %s", path, status, reason, extra={"path": path, "status": status})
    response = jsonify(error=f"webhook signature check failed: {reason}")
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(SIGNATURE_RETRY_AFTER_SECONDS)
    return response


@bp.route(ANSWER_URL, methods=["GET", "POST"])
def answer():
    return _answer("answer")


@bp.route(FALLBACK_URL, methods=["GET", "POST"])
def fallback():
    voice = _voice()
    try:
        fields = request.payload().fields
    except (PayloadError, HTTPException):
        fields = {}
    voice.log.warning(
        "fallback answer URL called: reason %s, original request %s",
        fields.get("reason", "not given"),
        json.dumps(fields.get("original_request"), default=str),
        extra={"reason": fields.get("reason"), "original_request": fields.get("original_request")},
    )
    return _answer("fallback")


@bp.route(EVENT_URL, methods=["GET", "POST"])
def event():
    return _event(tell_why=False)


@bp.route(CONNECT_EVENT_URL, methods=["GET", "POST"])
def connect_event():
    """A connect's eventUrl: the events of the leg it rings, stored like any other; its failed outcome is answered
    with the NCCO that tells the caller why (the connect is synchronous)."""
    return _event(tell_why=True)


def _event(tell_why: bool):
    voice = _voice()
    req = request._get_current_object()
    try:
        payload = req.payload()
    except PayloadError as error:
        voice.log.warning("event refused (%s): %s", error.status, error.message, extra={"path": req.path})
        return jsonify(error=error.message), error.status
    received_at = time.time()
    row = event_row(payload, utc_timestamp(received_at), req.signature_verified)
    try:
        new = voice.call_log.client.record_event(row)
    except StorageError as error:
        voice.log.error("event not stored, answering 503 so Vonage retries: %s", error, extra={"path": req.path})
        response = jsonify(error=f"the event could not be stored ({error}); it was not accepted, send it again")
        response.status_code = 503
        response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER_SECONDS)
        return response
    if payload.problem is not None:
        voice.log.warning("VOICE EVENT stored as received, unread: %s", payload.problem, extra={"path": req.path})
        return "", 204
    log_event(voice.log, payload.fields, received_at, req.signature_verified, duplicate=not new)
    told = told_why(payload.fields, voice.plan) if tell_why else None
    if told is None:
        return "", 204
    return _tell_why(voice, payload.fields, told, new)


def _tell_why(voice: Voice, fields: dict, told: ToldWhy, new: bool):
    """Answer a failed connect's outcome with the NCCO that tells the caller why; log it, and record it once."""
    leg = fields.get("uuid") or fields.get("call_uuid")
    details = {"route": "outcome", "conversation_uuid": fields.get("conversation_uuid"), "leg": leg}
    repeat = "" if new else " (a repeated delivery)"
    voice.log.info("connect outcome on leg %s: %s%s", leg, told.reason, repeat, extra=details)
    if new:
        to = fields.get("to")
        decision = AnswerDecision(
            told.ncco, to if isinstance(to, str) else None, None, told.reason, dict(fields), told.body
        )
        verified = request.signature_verified
        try:
            voice.call_log.client.record_answer(answer_row("outcome", decision, utc_timestamp(time.time()), verified))
        except Exception:
            voice.log.exception("told-why decision not recorded")
    return current_app.response_class(told.body, mimetype="application/json")


@bp.errorhandler(Exception)
def failed(error: Exception):
    """Vonage drops a call silently on any error status from the answer URL: a trusted answer request that
    fails anyway gets a spoken sentence instead. Everything else gets the server's usual error response."""
    if request.endpoint not in ("voice.answer", "voice.fallback") or not _trusted():
        return error_response(error)
    if not isinstance(error, HTTPException):
        _voice().log.exception("unexpected error on %s", request.path)
    return _respond(request.endpoint.removeprefix("voice."), _unreadable("the server failed while reading it"))


def _trusted() -> bool:
    return request.signature_verified or not _voice().settings.signature_secrets


def _answer(route: str):
    voice = _voice()
    req = request._get_current_object()
    try:
        payload = req.payload()
    except PayloadError as error:
        if error.status != 400 or req.body.strip():
            return _respond(route, _unreadable(error.message))
        payload = Payload({})  # an answer request with no fields has no callee: refused with a spoken reason
    except HTTPException as error:
        return _respond(route, _unreadable(error.description))
    if payload.problem is not None:
        return _respond(route, _unreadable(payload.problem))
    plan = voice.plan if voice.plan.event_url else _plan_for_host(voice.plan, *_own_scheme_and_host(req))
    return _respond(route, decide_answer(payload.fields, voice.policy, plan, voice.routing))


def _own_scheme_and_host(req) -> tuple[str, str]:
    """How Vonage reached this server, for a connect's eventUrl when PUBLIC_URL is unset: the request's own host,
    and its scheme, or the one a proxy in front (ngrok) says the request came in with."""
    forwarded = req.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return (forwarded if forwarded in ("http", "https") else req.scheme), req.host


@functools.lru_cache(maxsize=64)
def _plan_for_host(plan: CallPlan, scheme: str, host: str) -> CallPlan:
    return replace(plan, event_url=f"{scheme}://{host}{CONNECT_EVENT_URL}")


def _unreadable(problem: str) -> AnswerDecision:
    plan = _voice().plan
    return AnswerDecision(
        ncco=refusal_ncco("the call request could not be read", plan.language, plan.style),
        requested=None,
        callee=None,
        reason=f"the answer request could not be read: {problem}",
    )


def _respond(route: str, decision: AnswerDecision):
    voice = _voice()
    verified = request.signature_verified
    log_answer(voice.log, route, decision)
    try:
        voice.call_log.client.record_answer(answer_row(route, decision, utc_timestamp(time.time()), verified))
    except Exception:
        voice.log.exception("answer decision not recorded")
    return current_app.response_class(decision.body, mimetype="application/json")


def log_answer(log: logging.Logger, route: str, decision: AnswerDecision) -> None:
    """One log line per answer decision: who called whom, connected or refused and why."""
    fields = decision.request
    caller = fields.get("from_user") or fields.get("from") or "unknown caller"
    details = {
        "route": route,
        "connected": decision.connected,
        "shape": decision.shape,
        "caller": caller,
        "requested": decision.requested,
        "callee": decision.callee,
        "conversation_uuid": fields.get("conversation_uuid"),
    }
    if decision.connected and decision.shape == OUTBOUND:
        log.info("NCCO request: connecting %s to %s", caller, decision.callee, extra=details)
    elif decision.connected:
        to = f" (a call to {decision.requested})" if decision.requested != decision.callee else ""
        log.info("NCCO request: connecting %s to app user %s%s", caller, decision.callee, to, extra=details)
    else:
        log.warning("NCCO request: refused call from %s: %s", caller, decision.reason, extra=details)
