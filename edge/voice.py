"""The voice webhooks Vonage calls: /voice/answer and /voice/fallback answer with an NCCO; /voice/event and
/voice/event/connect store every event (the second also tells a caller why a connect failed).

They are a small WSGI layer in front of the Flask app, on werkzeug's request and nothing else of Flask's: every
call's webhooks come through here, and measured under granian, Flask's dispatch (request context, URL matching,
signals, response objects) cost more than everything the answer URL does itself; without it the server answers
about 1.7 times as many calls a second. The call log's API and page stay Flask blueprints. Each webhook passes
the signature check first (when VONAGE_SIGNATURE_SECRET is set), then is read, decided, recorded and answered.
"""

from __future__ import annotations

import functools
import http
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from werkzeug.exceptions import HTTPException
from werkzeug.sansio.utils import get_host

from calllog import CallLog, StorageError
from calllog.client import EventChannel
from calllog.rows import EventRow, answer_key, answer_row, event_row
from config import Settings
from edge.errors import JSON, error_body
from edge.payloads import PayloadError
from edge.signatures import UNREADABLE_CODE, SignatureError, check_payload, verify_token
from edge.webhook import WebhookRequest
from events import ANSWER_RECORD, TOLD_WHY_RECORD, Payload, log_event, utc_timestamp
from ncco import (
    CONNECT_WEBHOOK,
    FALLBACK_WEBHOOK,
    OUTBOUND,
    RECORDING_WEBHOOK,
    TOLD_WHY_ROUTE,
    WEBHOOKS,
    AnswerDecision,
    CallPlan,
    CallRouting,
    ToldWhy,
    Webhook,
    decide_answer,
    refusal_ncco,
    told_why,
)
from policy import DestinationPolicy, load_number_metadata
from runtime.metrics import UNKNOWN_SHAPE, Metrics, Tally

METHODS = ("GET", "POST")
SIGNATURE_RETRY_AFTER_SECONDS = 5
# "200 OK" for each status: looking the phrase up in http.HTTPStatus costs more than the rest of a reply.
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in http.HTTPStatus}


@dataclass(frozen=True)
class Voice:
    """What the voice webhooks work with, set up once by the app factory."""

    settings: Settings
    call_log: CallLog
    log: logging.Logger
    metrics: Metrics
    policy: DestinationPolicy = field(init=False)
    plan: CallPlan = field(init=False)
    routing: CallRouting = field(init=False)

    def __post_init__(self):
        # Built once: the settings never change while the server runs.
        object.__setattr__(self, "policy", self.settings.destination_policy)
        object.__setattr__(self, "routing", self.settings.call_routing)
        plan = self.settings.call_plan
        if self.settings.public_url:
            plan = _plan_for_base(plan, self.settings.public_url)
        object.__setattr__(self, "plan", plan)


@dataclass(frozen=True)
class Reply:
    """A response: status, body and its content type, and any other headers."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def header_list(self) -> list[tuple[str, str]]:
        """The headers but Content-Length."""
        headers = list(self.headers)
        if self.content_type:
            headers.append(("Content-Type", self.content_type))
        return headers

    def send(self, start_response) -> list[bytes]:
        headers = self.header_list()
        if self.status != 204:  # a 204 has no body, and says nothing of its length (RFC 9110, 8.6)
            headers.append(("Content-Length", str(len(self.body))))
        start_response(_STATUS_LINES[self.status], headers)
        return [self.body]


def ncco_reply(body: bytes) -> Reply:
    return Reply(200, body, JSON)


def json_error(status: int, message: str, *headers: tuple[str, str]) -> Reply:
    """An error for people: JSON with one message that names the problem and the fix (edge/errors.py)."""
    return Reply(status, error_body(message), JSON, headers)


@dataclass(frozen=True)
class Route:
    """One webhook (ncco.WEBHOOKS): the function that serves it, and its counters (voice_webhooks_total), bound at
    start-up.

    An event route (one that does not answer calls) stores what it gets; the event loop of `make run` serves it
    with `serve_event` instead of `handle`, so that waiting for the commit holds no thread."""

    webhook: Webhook
    handle: Callable[[Voice, WebhookRequest, Webhook], Reply]
    by_status: dict[int, Tally]  # response status -> the tally of that status's outcome
    refused: Tally  # requests the signature check refused


class VoiceWebhooks:
    """The WSGI layer: a request for one of PATHS is served here, anything else goes on to `app`."""

    def __init__(self, app: Callable, voice: Voice):
        self.app = app
        self.voice = voice
        self.routes = {webhook.path: _route(webhook, voice.metrics) for webhook in WEBHOOKS}

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO"))
        if route is None:
            return self.app(environ, start_response)
        req = WebhookRequest(environ)
        refusal = self.refuse_early(route, req)
        if refusal is not None:
            return refusal.send(start_response)
        return self.serve(route, req).send(start_response)

    def refuse_early(self, route: Route, req: WebhookRequest) -> Reply | None:
        """What can be refused before the body is read: a method the webhooks do not take, a request a browser
        sent from a web page, a token that is not Vonage's. None when the request goes on."""
        method = req.method
        if method not in METHODS:
            path = req.environ.get("PATH_INFO")
            route.by_status[405].inc()
            return json_error(405, f"{method} is not supported on {path}; use GET or POST", ("Allow", "GET, POST"))
        refusal = cross_site_refusal(self.voice, req)
        if refusal is None:
            refusal = check_token(self.voice, req)
            if refusal is not None:
                route.refused.inc()
                return refusal
        if refusal is not None:
            route.by_status[refusal.status].inc()
        return refusal

    def serve(self, route: Route, req: WebhookRequest) -> Reply:
        """The reply to a request that refuse_early let through."""
        try:
            refusal = self._signature_refusal(route, req)
            if refusal is not None:
                return refusal
            reply = route.handle(self.voice, req, route.webhook)
        except Exception as error:
            return self._failed(route, req, error)
        route.by_status[reply.status].inc()
        return reply

    async def serve_event(self, route: Route, req: WebhookRequest, channel: EventChannel) -> Reply:
        """serve, for an event route on an event loop: the commit is awaited on `channel`."""
        voice = self.voice
        try:
            refusal = self._signature_refusal(route, req)
            if refusal is not None:
                return refusal
            prepared = prepare_event(voice, req)
            if isinstance(prepared, Reply):
                reply = prepared
            else:
                try:
                    new = await channel.record_event(prepared.row)
                except StorageError as error:
                    reply = not_stored(voice, req, error)
                else:
                    reply = event_stored(voice, req, prepared, new, route.webhook is CONNECT_WEBHOOK)
        except Exception as error:
            return self._failed(route, req, error)
        route.by_status[reply.status].inc()
        return reply

    def _signature_refusal(self, route: Route, req: WebhookRequest) -> Reply | None:
        """check_signature's refusal, counted on the route; None for a request signed by Vonage (or signatures off)."""
        refusal = check_signature(self.voice, req)
        if refusal is not None:
            route.refused.inc()
        return refusal

    def _failed(self, route: Route, req: WebhookRequest, error: Exception) -> Reply:
        reply = failed(self.voice, req, route.webhook, error)
        # An unexpected error counts as one even when the caller still heard a sentence (an answer's 200).
        route.by_status[reply.status if isinstance(error, HTTPException) else 500].inc()
        return reply


def _route(webhook: Webhook, metrics: Metrics) -> Route:
    """The route for `webhook`, served by its function, with its counters (its name is their `route` label)."""
    name = webhook.name
    handle = answer if webhook.answers_calls else event
    return Route(webhook, handle, metrics.webhooks[name], metrics.signature_refused[name])


def init_app(app, settings: Settings, call_log: CallLog, log: logging.Logger, metrics: Metrics) -> None:
    """Put the voice webhooks in front of the Flask app (Flask's documented way to add WSGI middleware). What an
    answer needs is loaded here, before the first request (a request imports nothing: tests/test_imports.py)."""
    load_number_metadata()
    voice = Voice(settings, call_log, log, metrics)
    app.extensions["voice"] = voice
    app.wsgi_app = VoiceWebhooks(app.wsgi_app, voice)


# Sec-Fetch-Site values a browser sends for a request a person made themselves (typed, bookmarked).
_NOT_CROSS_SITE = ("none",)


def cross_site_refusal(voice: Voice, req: WebhookRequest) -> Reply | None:
    """Refuse a request a browser made on behalf of a web page (it says so in Origin or Sec-Fetch-Site). Vonage
    sends neither, and with signatures off a page on any site could otherwise make a visitor's browser post
    events or place calls through this server."""
    environ = req.environ
    origin = environ.get("HTTP_ORIGIN")
    fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
    if origin is None and (fetch_site is None or fetch_site.strip().lower() in _NOT_CROSS_SITE):
        return None
    said = f"Origin: {origin}" if origin is not None else f"Sec-Fetch-Site: {fetch_site}"
    voice.log.warning("refused a browser's request to %s (%s)", req.path, said, extra={"path": req.path})
    return json_error(
        403,
        f"a web page made this request ({said}); the voice webhooks take requests from Vonage (or curl), never "
        "from a browser on behalf of a page",
    )


def check_token(voice: Voice, req: WebhookRequest) -> Reply | None:
    """The signature check's first half, which needs no body: refuse a request whose token is not Vonage's.
    The body of a request nobody signed is then never waited for."""
    secrets = voice.settings.signature_secrets
    if not secrets:
        return None
    try:
        req.claims = verify_token(req.authorization_header, secrets, time.time(), voice.settings.signature_max_age)
    except SignatureError as refusal:
        voice.metrics.refusals[refusal.code].inc()
        return _refuse(voice.log, req, refusal.status, refusal.reason)
    return None


def check_signature(voice: Voice, req: WebhookRequest) -> Reply | None:
    """Refuse a request that is not signed by Vonage, before anything of it is read, decided or stored: its
    token (check_token, unless already checked) and then its payload hash."""
    secrets = voice.settings.signature_secrets
    if not secrets:
        return None
    if req.claims is None:
        refusal = check_token(voice, req)
        if refusal is not None:
            return refusal
    try:
        check_payload(req.claims, req.method, req.body, req.query_pairs)
    except SignatureError as refusal:
        voice.metrics.refusals[refusal.code].inc()
        return _refuse(voice.log, req, refusal.status, refusal.reason)
    except HTTPException as error:
        # The body could not be read, so the request cannot be checked: refused like a bad signature.
        voice.metrics.refusals[UNREADABLE_CODE].inc()
        return _refuse(voice.log, req, error.code or 400, error.description or "the request could not be read")
    req.signature_verified = True
    return None


def _refuse(log: logging.Logger, req: WebhookRequest, status: int, reason: str) -> Reply:
    path = req.path
    log.warning("signature refused on %s (%s): %s", path, status, reason, extra={"path": path, "status": status})
    retry = (("Retry-After", str(SIGNATURE_RETRY_AFTER_SECONDS)),) if status == 503 else ()
    return json_error(status, f"webhook signature check failed: {reason}", *retry)


def answer(voice: Voice, req: WebhookRequest, webhook: Webhook) -> Reply:
    """An answer route: the NCCO for a new call. The fallback answer URL also logs why Vonage called it."""
    if webhook is FALLBACK_WEBHOOK:
        log_fallback(voice, req)
    return _answer(voice, req, webhook.name)


def log_fallback(voice: Voice, req: WebhookRequest) -> None:
    try:
        fields = req.payload().fields
    except (PayloadError, HTTPException):
        fields = {}
    voice.log.warning(
        "fallback answer URL called: reason %s, original request %s",
        fields.get("reason", "not given"),
        json.dumps(fields.get("original_request"), default=str),
        extra={"reason": fields.get("reason"), "original_request": fields.get("original_request")},
    )


def event(voice: Voice, req: WebhookRequest, webhook: Webhook) -> Reply:
    """An event route: the event stored. On a connect's own eventUrl, a failed outcome is answered with the NCCO
    that tells the caller why (the connect is synchronous)."""
    return _event(voice, req, tell_why=webhook is CONNECT_WEBHOOK)


@dataclass(frozen=True)
class PreparedEvent:
    """An event read and made into its row, ready to be stored."""

    payload: Payload
    received_at: float
    row: EventRow


def _event(voice: Voice, req: WebhookRequest, tell_why: bool) -> Reply:
    prepared = prepare_event(voice, req)
    if isinstance(prepared, Reply):
        return prepared
    try:
        new = voice.call_log.client.record_event(prepared.row)
    except StorageError as error:
        return not_stored(voice, req, error)
    return event_stored(voice, req, prepared, new, tell_why)


def prepare_event(voice: Voice, req: WebhookRequest) -> PreparedEvent | Reply:
    """The event's row, or the reply to an event that cannot be read."""
    try:
        payload = req.payload()
    except PayloadError as error:
        voice.log.warning("event refused (%s): %s", error.status, error.message, extra={"path": req.path})
        return json_error(error.status, error.message)
    received_at = time.time()
    return PreparedEvent(payload, received_at, event_row(payload, utc_timestamp(received_at), req.signature_verified))


def not_stored(voice: Voice, req: WebhookRequest, error: StorageError) -> Reply:
    voice.log.error("event not stored, answering 503 so Vonage retries: %s", error, extra={"path": req.path})
    message = f"the event could not be stored ({error}); it was not accepted, send it again"
    return json_error(503, message, ("Retry-After", str(error.retry_after)))


def event_stored(voice: Voice, req: WebhookRequest, prepared: PreparedEvent, new: bool, tell_why: bool) -> Reply:
    """The reply to an event now stored (`new`) or stored before: logged, and for a connect's failed outcome the
    NCCO that tells the caller why."""
    payload = prepared.payload
    if payload.problem is not None:
        voice.log.warning("VOICE EVENT stored as received, unread: %s", payload.problem, extra={"path": req.path})
        return Reply(204)
    log_event(voice.log, payload.fields, prepared.received_at, req.signature_verified, duplicate=not new)
    told = told_why(payload.fields, voice.plan) if tell_why else None
    if told is None:
        return Reply(204)
    return _tell_why(voice, req, payload.fields, told, new)


def _tell_why(voice: Voice, req: WebhookRequest, fields: dict, told: ToldWhy, new: bool) -> Reply:
    """Answer a failed connect's outcome with the NCCO that tells the caller why; log it, and record it once."""
    leg = fields.get("uuid") or fields.get("call_uuid")
    details = {
        "record": TOLD_WHY_RECORD,
        "route": TOLD_WHY_ROUTE,
        "conversation_uuid": fields.get("conversation_uuid"),
        "leg": leg,
        "reason": told.reason,
        "repeated": not new,
    }
    repeat = "" if new else " (a repeated delivery)"
    voice.log.info("connect outcome on leg %s: %s%s", leg, told.reason, repeat, extra=details)
    if new:
        voice.metrics.told_why.inc()
        to = fields.get("to")
        decision = AnswerDecision(
            told.ncco, to if isinstance(to, str) else None, None, told.reason, dict(fields), told.body
        )
        received_at = utc_timestamp(time.time())
        try:
            row = answer_row(TOLD_WHY_ROUTE, decision, received_at, req.signature_verified, _outcome_key(req, fields))
            voice.call_log.client.record_answer(row)
        except Exception:
            voice.log.exception("told-why decision not recorded")
    return ncco_reply(told.body)


def _outcome_key(req: WebhookRequest, fields: dict) -> str:
    """A told-why decision's key: one per failed leg and status, so it is recorded once however often it comes."""
    leg = fields.get("uuid") or fields.get("call_uuid")
    return answer_key(f"outcome:{leg}:{fields.get('status')}") if leg else answer_key()


def failed(voice: Voice, req: WebhookRequest, webhook: Webhook, error: Exception) -> Reply:
    """Vonage drops a call silently on any error status from the answer URL: a trusted answer request that
    fails anyway gets a spoken sentence instead. Anything else gets a JSON error."""
    if not isinstance(error, HTTPException):
        voice.log.exception("unexpected error on %s", req.path)
    trusted = req.signature_verified or not voice.settings.signature_secrets
    if webhook.answers_calls and trusted:
        return _respond(voice, req, webhook.name, _unreadable(voice, "the server failed while reading it"))
    if isinstance(error, HTTPException):
        return json_error(error.code or 400, error.description or "the request could not be read")
    return json_error(500, "the server failed on this request; the log has the details")


def _answer(voice: Voice, req: WebhookRequest, route: str) -> Reply:
    try:
        payload = req.payload()
    except PayloadError as error:
        if error.status != 400 or req.body.strip():
            return _respond(voice, req, route, _unreadable(voice, error.message))
        payload = Payload({})  # an answer request with no fields has no callee: refused with a spoken reason
    except HTTPException as error:
        return _respond(voice, req, route, _unreadable(voice, error.description))
    if payload.problem is not None:
        return _respond(voice, req, route, _unreadable(voice, payload.problem))
    plan = voice.plan if voice.plan.event_url else _plan_for_request(voice.plan, req.environ)
    return _respond(voice, req, route, decide_answer(payload.fields, voice.policy, plan, voice.routing))


def _plan_for_request(plan: CallPlan, environ: dict) -> CallPlan:
    """The call plan with the connect's eventUrl on this server as the request reached it (PUBLIC_URL unset)."""
    get = environ.get
    return _plan_for_host(
        plan,
        get("HTTP_X_FORWARDED_PROTO", ""),
        get("wsgi.url_scheme", "http"),
        get("HTTP_HOST"),
        (get("SERVER_NAME", ""), get("SERVER_PORT")),
    )


@functools.lru_cache(maxsize=64)
def _plan_for_host(plan: CallPlan, forwarded: str, url_scheme: str, host: str | None, server: tuple) -> CallPlan:
    """The eventUrl from the request's own host (as werkzeug reads and checks it) and its scheme, or the one a
    proxy in front (ngrok) says the request came in with. Cached: a server is reached by a handful of names."""
    forwarded = forwarded.split(",")[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else url_scheme
    port = int(server[1]) if server[1] and server[1].isdigit() else None
    return _plan_for_base(plan, f"{scheme}://{get_host(url_scheme, host, (server[0], port))}")


def _plan_for_base(plan: CallPlan, base: str) -> CallPlan:
    """The call plan with the connect's eventUrl, and the recording's when calls are recorded, on `base`."""
    recording_url = base + RECORDING_WEBHOOK.path if plan.record_calls else None
    return replace(plan, event_url=base + CONNECT_WEBHOOK.path, recording_url=recording_url)


def _unreadable(voice: Voice, problem: str) -> AnswerDecision:
    plan = voice.plan
    return AnswerDecision(
        ncco=refusal_ncco("the call request could not be read", plan.language, plan.style),
        requested=None,
        callee=None,
        reason=f"the answer request could not be read: {problem}",
        shape=UNKNOWN_SHAPE,
    )


def _respond(voice: Voice, req: WebhookRequest, route: str, decision: AnswerDecision) -> Reply:
    log_answer(voice.log, route, decision)
    # An unreadable request's decision has UNKNOWN_SHAPE, which Metrics.refused_calls counts as unreadable.
    (voice.metrics.connected if decision.connected else voice.metrics.refused_calls)[decision.shape].inc()
    received_at = utc_timestamp(time.time())
    try:
        key = answer_key(req.claims.get("jti")) if req.claims else None
        voice.call_log.client.record_answer(answer_row(route, decision, received_at, req.signature_verified, key))
    except Exception:
        voice.log.exception("answer decision not recorded")
    return ncco_reply(decision.body)


def log_answer(log: logging.Logger, route: str, decision: AnswerDecision) -> None:
    """One log line per answer decision: who called whom, connected or refused and why."""
    fields = decision.request
    caller = fields.get("from_user") or fields.get("from") or "unknown caller"
    details = {
        "record": ANSWER_RECORD,
        "route": route,
        "connected": decision.connected,
        "shape": decision.shape,
        "caller": caller,
        "requested": decision.requested,
        "callee": decision.callee,
        "conversation_uuid": fields.get("conversation_uuid"),
        "reason": decision.reason,
    }
    if decision.connected and decision.shape == OUTBOUND:
        log.info("NCCO request: connecting %s to %s", caller, decision.callee, extra=details)
    elif decision.connected:
        to = f" (a call to {decision.requested})" if decision.requested != decision.callee else ""
        log.info("NCCO request: connecting %s to app user %s%s", caller, decision.callee, to, extra=details)
    else:
        log.warning("NCCO request: refused call from %s: %s", caller, decision.reason, extra=details)
