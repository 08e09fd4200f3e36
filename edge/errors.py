"""How the server answers an error: JSON with one message that names the problem and the fix, never a traceback.

Every JSON error has one shape, `{"error": message}`, written by error_body: the voice webhooks' front
(edge/voice.py's json_error) and Flask's routes (error_response, for any error a route raises: werkzeug's HTTP
errors with their message, a StorageError, anything unexpected) both send it."""

from __future__ import annotations

import json
import logging

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from calllog import StorageError
from edge.payloads import MAX_BODY_BYTES
from ncco import WEBHOOKS
from runtime.logs import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)
# Methods every route answers by itself; not worth naming in a 405's advice.
_IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
JSON = "application/json"


def error_body(message: str) -> bytes:
    """A JSON error's body."""
    return _encode({"error": message}).encode("utf-8")


def init_app(app: Flask) -> None:
    app.register_error_handler(Exception, error_response)


def error_response(error: Exception):
    """The JSON response for any error raised while handling a request."""
    if isinstance(error, StorageError):
        message = f"the call log is unavailable: {error}; try again in a moment"
        return error_json_response(503, message, [("Retry-After", str(error.retry_after))])
    if not isinstance(error, HTTPException):
        log.exception("unexpected error on %s", request.path)
        return error_json_response(500, "the server failed on this request; the log has the details")
    message = error.description or ""
    if error.code == 404 and message == NotFound.description:
        message = f"there is no route {request.path}; the routes are " + ", ".join(routes())
    elif error.code == 413:
        message = f"the body is over the limit of {MAX_BODY_BYTES} bytes; Vonage's webhooks are far smaller"
    elif isinstance(error, MethodNotAllowed):
        allowed = sorted(set(error.valid_methods or ()) - _IMPLICIT_METHODS)
        message = f"{request.method} is not supported on {request.path}; use {' or '.join(allowed)}"
    # The error's own headers (Retry-After, Allow, WWW-Authenticate) but its HTML content type.
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return error_json_response(error.code or 500, message, headers)


def error_json_response(status: int, message: str, headers: list[tuple[str, str]] | None = None):
    """A Flask route's JSON error, for a route that answers one itself rather than raising it."""
    return current_app.response_class(error_body(message), status, headers, mimetype=JSON)


def routes() -> list[str]:
    """Every route this server answers, in order, without the static files' own."""
    seen = [webhook.path for webhook in WEBHOOKS]  # served in front of Flask, so not in its URL map
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint != "static" and not rule.endpoint.endswith(".static") and rule.rule not in seen:
            seen.append(rule.rule)
    return seen
