"""The webhook server: application factory, routes and CLI commands."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping

import click
from flask import Flask, Request, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property

import api
import calls
import page
from config import Settings, load_settings, settings_from
from events import log_event
from logs import configure_logging, utc_timestamp
from ncco import NUMBER_TYPE_NAMES, AnswerDecision, decide_answer, refusal_ncco
from payloads import MAX_BODY_BYTES, PayloadError, first_values, parse_query, read_payload
from signatures import SignatureError, verify_webhook
from simulate import simulate_command
from storage import StorageError, Store
from writer import RemoteWriter

__version__ = "0.1.0"

SIGNATURE_RETRY_AFTER_SECONDS = 5

ROUTES = {
    "answer_url": "/voice/answer",
    "event_url": "/voice/event",
    "fallback_answer_url": "/voice/fallback",
    "health": "/health",
    "call_log": "/api/calls",
    "call_log_page": "/calls",
}


class WebhookRequest(Request):
    """A Flask request that parses its query string once (the signature check and the fields both need it),
    never waits on the input stream for a request that has no body, and reads a body in one call."""

    signature_verified = False  # set by the signature check when the request carried a valid one

    @cached_property
    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_query(self.query_string)

    @cached_property
    def body(self) -> bytes:
        # HTTP/1.1: a request with neither Content-Length nor chunked encoding has no body.
        chunked = "chunked" in self.environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        length = self.content_length
        if chunked:
            return self.get_data(cache=True)
        if not length:
            return b""
        if self.max_content_length is not None and length > self.max_content_length:
            raise RequestEntityTooLarge()
        # One read of the announced length: werkzeug's stream reads through a 64 KiB buffer and several layers,
        # and with granian every read call gives up the GIL, so each one costs a wait for it under load.
        data = self.environ["wsgi.input"].read(length)
        if len(data) < length:
            raise ClientDisconnected(f"the body ended after {len(data)} of the {length} bytes its Content-Length announced")
        self._cached_data = data  # what get_data and form parsing read from now on
        return data


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Build the server. `test_config` replaces the environment and .env (for tests) when given."""
    settings = settings_from(test_config) if test_config is not None else load_settings()
    app = Flask(__name__)
    app.request_class = WebhookRequest
    # Flask refuses larger bodies with 413 before a route reads them.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SETTINGS"] = settings
    app.config["CALL_LOG_TOKEN"] = settings.call_log_token or secrets.token_urlsafe(18)
    log = configure_logging(settings.log_format)
    policy, plan = settings.destination_policy, settings.call_plan
    store = Store(settings.database_url)
    app.extensions["store"] = store
    # Under `make run` a writer process commits for every worker; otherwise this process writes itself.
    writer = RemoteWriter(settings.writer_socket) if settings.writer_socket else store
    try:
        store.ensure_schema()
    except StorageError as error:
        # Answering calls needs no database: start anyway, and answer events with 503 until it is back.
        log.error("call log unavailable at start-up: %s", error)

    def answer_with(fields: dict | None, unreadable: str | None, route: str):
        if fields is None:
            decision = AnswerDecision(
                ncco=refusal_ncco("the call request could not be read", settings.tts_language),
                requested=None,
                callee=None,
                reason=f"the answer request could not be read: {unreadable}",
            )
        else:
            decision = decide_answer(fields, policy, plan)
        log_answer(log, route, decision)
        try:
            writer.record_answer(answer_row(route, decision, request.signature_verified))
        except Exception:
            log.exception("answer decision not recorded")
        return app.response_class(decision.body, mimetype="application/json")

    signed_paths = {ROUTES["answer_url"], ROUTES["event_url"], ROUTES["fallback_answer_url"]}

    @app.before_request
    def check_signature():
        req = request._get_current_object()  # one context lookup, not one per attribute
        if req.path not in signed_paths or not settings.signature_secrets:
            return None
        try:
            verify_webhook(
                req.headers.get("Authorization"),
                req.method,
                req.body,
                req.query_pairs,
                settings.signature_secrets,
                time.time(),
                settings.signature_max_age,
            )
        except SignatureError as refusal:
            log.warning(
                "signature refused on %s (%s): %s",
                req.path,
                refusal.status,
                refusal.reason,
                extra={"path": req.path, "status": refusal.status},
            )
            response = jsonify(error=f"webhook signature check failed: {refusal.reason}")
            response.status_code = refusal.status
            if refusal.status == 503:
                response.headers["Retry-After"] = str(SIGNATURE_RETRY_AFTER_SECONDS)
            return response
        req.signature_verified = True
        return None

    @app.route(ROUTES["answer_url"], methods=["GET", "POST"])
    def answer():
        fields, problem = answer_fields(request._get_current_object())
        return answer_with(fields, problem, "answer")

    @app.route(ROUTES["fallback_answer_url"], methods=["GET", "POST"])
    def fallback():
        fields, problem = answer_fields(request)
        fields_seen = fields or {}
        log.warning(
            "fallback answer URL called: reason %s, original request %s",
            fields_seen.get("reason", "not given"),
            json.dumps(fields_seen.get("original_request"), default=str),
            extra={"reason": fields_seen.get("reason"), "original_request": fields_seen.get("original_request")},
        )
        return answer_with(fields, problem, "fallback")

    @app.route(ROUTES["event_url"], methods=["GET", "POST"])
    def event():
        req = request._get_current_object()
        try:
            payload = read_request_payload(req)
        except PayloadError as error:
            log.warning("event refused (%s): %s", error.status, error.message, extra={"path": req.path})
            return jsonify(error=error.message), error.status
        received_at = time.time()
        try:
            new = writer.record_event(payload, utc_timestamp(received_at), req.signature_verified)
        except StorageError as error:
            log.error("event not stored, answering 503 so Vonage retries: %s", error, extra={"path": req.path})
            return jsonify(error=f"the event could not be stored ({error}); it was not accepted, send it again"), 503
        log_event(log, payload, received_at, req.signature_verified, duplicate=not new)
        return "", 204

    @app.get(ROUTES["health"])
    def health():
        storage = store.health()
        # Still 200 when the database is down: answering calls does not need it, and a load balancer
        # that took this server out of rotation would drop calls it can still answer.
        return {
            "status": "ok" if storage["status"] == "ok" else "degraded",
            "version": __version__,
            "parts": {
                "answer": {
                    "status": "ok",
                    "caller_id": settings.vonage_number or "randomFromNumber",
                },
                "events": {"status": "ok", "log_format": settings.log_format},
                "signatures": signatures_health(settings),
                "storage": storage,
            },
        }

    @app.get("/")
    def index():
        return {"service": "Vonage voice webhook server", "version": __version__, "routes": ROUTES}

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path in (ROUTES["answer_url"], ROUTES["fallback_answer_url"]):
            # Vonage drops a call silently on any 4xx/5xx from the answer URL: answer with speech instead.
            return answer_with(None, error.description, "answer")
        message = error.description
        if error.code == 404:
            message = f"there is no route {request.path}; the routes are " + ", ".join(ROUTES.values())
        elif error.code == 413:
            message = f"the body is over the limit of {MAX_BODY_BYTES} bytes; Vonage's events are far smaller"
        elif error.code == 405:
            message = f"{request.method} is not supported on {request.path}; use GET or POST"
        return jsonify(error=message), error.code

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unexpected error on %s", request.path)
        if request.path in (ROUTES["answer_url"], ROUTES["fallback_answer_url"]):
            return answer_with(None, "the server failed while reading it", "answer")
        return jsonify(error="the server failed on this request; the log has the details"), 500

    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)
    for command in (simulate_command, *calls.COMMANDS):
        app.cli.add_command(command)
    register_commands(app, settings)
    return app


def signatures_health(settings: Settings) -> dict:
    """The signature check's state for /health: on (with how many secrets) or off, with a warning."""
    if not settings.signature_secrets:
        return {
            "status": "off",
            "warning": "VONAGE_SIGNATURE_SECRET is not set: webhooks are accepted without checking they come from Vonage",
        }
    return {"status": "on", "secrets": len(settings.signature_secrets), "max_age": settings.signature_max_age}


def read_request_payload(req: WebhookRequest) -> dict:
    """The webhook fields of a Flask request; raises PayloadError."""
    body = req.body  # first: the form parser then reads these bytes instead of the spent input stream
    form = req.form.to_dict() if req.mimetype == "multipart/form-data" else None
    return read_payload(req.method, req.headers.get("Content-Type"), body, first_values(req.query_pairs), form)


def answer_fields(req: WebhookRequest) -> tuple[dict | None, str | None]:
    """The answer request's fields, or None and the problem; an answer request with no fields has no callee."""
    try:
        return read_request_payload(req), None
    except PayloadError as error:
        if error.status == 400 and not req.body.strip():
            return {}, None
        return None, error.message


def answer_row(route: str, decision: AnswerDecision, verified: bool) -> dict:
    """The call-log record of one answer decision."""
    fields = decision.request
    return {
        "conversation_uuid": _text_or_none(fields.get("conversation_uuid")),
        "leg_uuid": _text_or_none(fields.get("uuid")),
        "route": route,
        "caller": _text_or_none(fields.get("from_user") or fields.get("from")),
        "requested": decision.requested,
        "callee": decision.callee,
        "connected": decision.connected,
        "reason": decision.reason,
        "received_at": utc_timestamp(time.time()),
        "verified": verified,
    }


def _text_or_none(value) -> str | None:
    return None if value is None else str(value)


def log_answer(log, route: str, decision: AnswerDecision) -> None:
    """One log line per answer decision: who called whom, connected or refused and why."""
    fields = decision.request
    caller = fields.get("from_user") or fields.get("from") or "unknown caller"
    details = {
        "route": route,
        "connected": decision.connected,
        "caller": caller,
        "requested": decision.requested,
        "callee": decision.callee,
        "conversation_uuid": fields.get("conversation_uuid"),
    }
    if decision.connected:
        log.info("NCCO request: connecting %s to %s", caller, decision.callee, extra=details)
    else:
        log.warning("NCCO request: refused call from %s: %s", caller, decision.reason, extra=details)


def register_commands(app: Flask, settings: Settings) -> None:
    """The project's `flask` commands."""

    @app.cli.command("settings")
    def show_settings():
        """Print the settings the server would start with."""
        for name, value in vars(settings).items():
            if name == "signature_secrets":
                value = f"({len(value)} set)" if value else "(not set: signatures are not checked)"
            elif name in ("call_log_token", "private_key", "api_secret"):
                value = "(set)" if value else "(not set)"
            elif name == "blocked_number_types":
                value = ",".join(sorted(NUMBER_TYPE_NAMES[item] for item in value)) or "(none)"
            elif name == "allowed_countries":
                value = ",".join(sorted(value)) or "(all)"
            click.echo(f"{name:22} {value}")

    @app.cli.command("ncco")
    @click.argument("number")
    def show_ncco(number: str):
        """Print the NCCO /voice/answer returns for a call to NUMBER, and why."""
        decision = decide_answer({"to": number}, settings.destination_policy, settings.call_plan)
        if decision.connected:
            click.echo(f"connect: {number} -> {decision.callee}")
        else:
            click.echo(f"refused: {decision.reason}")
        click.echo(json.dumps(decision.ncco, indent=2))
        if not decision.connected:
            raise SystemExit(1)
