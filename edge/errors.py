"""How the server answers an error: JSON with one message that names the problem and the fix, never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from edge.payloads import MAX_BODY_BYTES
from ncco import WEBHOOKS
from runtime.logs import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)
# Methods every route answers by itself; not worth naming in a 405's advice.
_IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


def init_app(app: Flask) -> None:
    app.register_error_handler(Exception, error_response)


def error_response(error: Exception):
    """The JSON response for any error raised while handling a request."""
    if not isinstance(error, HTTPException):
        log.exception("unexpected error on %s", request.path)
        return jsonify(error="the server failed on this request; the log has the details"), 500
    message = error.description
    if error.code == 404:
        message = f"there is no route {request.path}; the routes are " + ", ".join(routes())
    elif error.code == 413:
        message = f"the body is over the limit of {MAX_BODY_BYTES} bytes; Vonage's webhooks are far smaller"
    elif isinstance(error, MethodNotAllowed):
        allowed = sorted(set(error.valid_methods or ()) - _IMPLICIT_METHODS)
        message = f"{request.method} is not supported on {request.path}; use {' or '.join(allowed)}"
    return jsonify(error=message), error.code


def routes() -> list[str]:
    """Every route this server answers, in order, without the static files' own."""
    seen = [webhook.path for webhook in WEBHOOKS]  # served in front of Flask, so not in its URL map
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint != "static" and not rule.endpoint.endswith(".static") and rule.rule not in seen:
            seen.append(rule.rule)
    return seen
