"""POST /api/calls/<leg>/actions: act on a leg in progress (CALL_CONTROL=on): parse, check who asks, act, respond.

Who may act: the call-log token in `Authorization: Bearer` only, never the page's cookie nor `?token=` (a cookie
goes with any request the browser makes, whoever's page made it), and no browser request from a page of another
origin (CSRF). The page's own script sends the token it was given in the page (docs/call-control.md).
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, request
from werkzeug.exceptions import BadRequest, Forbidden, NotFound

from calllog import access
from calllog.api import token_refusal
from edge.errors import error_json_response
from ncco import CONNECT_WEBHOOK
from outbound.call_requests import CallRules

bp = Blueprint("call_actions", __name__)
bp.record_once(access.init_app)
EXTENSION = "call_control"
OFF = (
    "acting on calls is off: set CALL_CONTROL=on (with VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY) and restart "
    "the server"
)
# Sec-Fetch-Site values that say another site's page made the request.
_OTHER_SITES = ("cross-site", "same-site")


def init_app(app: Flask, settings, database) -> None:
    """Register the route; with CALL_CONTROL=on, load the controller now (a request imports nothing)."""
    if settings.call_control:
        from outbound.call_control import CallController

        app.extensions[EXTENSION] = CallController(settings, database)
    app.register_blueprint(bp)


def own_origins() -> set[str]:
    """The origins this server's own page is served from: the address the browser reached, and PUBLIC_URL's."""
    scheme = "https" if access.came_over_tls() else "http"
    origins = {f"{scheme}://{request.host}".lower()}
    public_url = current_app.config["SETTINGS"].public_url
    if public_url:
        parts = urlsplit(public_url)
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    return origins


def cross_origin_refusal() -> Forbidden | None:
    """Refuse a browser's request made by a page of another origin (its Origin, or Sec-Fetch-Site, says so)."""
    origin = request.headers.get("Origin")
    fetch_site = (request.headers.get("Sec-Fetch-Site") or "").strip().lower()
    if origin is not None and origin.lower() not in own_origins():
        said = f"Origin: {origin[:200]}"
    elif fetch_site in _OTHER_SITES:
        said = f"Sec-Fetch-Site: {fetch_site}"
    else:
        return None
    access.log.warning("refused a call action from another site's page (%s) from %s", said, request.remote_addr)
    return Forbidden(f"a page of another origin made this request ({said}); only the call log's own page may act")


@bp.after_request
def api_headers(response):
    return access.add_headers(response, access.API_HEADERS)


@bp.post("/api/calls/<path:leg_uuid>/actions")
def act(leg_uuid: str):
    controller = current_app.extensions.get(EXTENSION)
    if controller is None:
        raise NotFound(OFF)
    refusal = cross_origin_refusal() or token_refusal(
        "api", "acting on a call needs the call log's token", " (the page's cookie is not taken here)", cookie=False
    )
    if refusal is not None:
        raise refusal
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest('send a JSON object with the action, for example {"action": "hangup"}')
    voice = current_app.extensions["voice"]
    plan = voice.plan
    if not plan.event_url:
        # As the answer URL builds it: the transferred connect's outcome comes back to this server.
        plan = replace(plan, event_url=request.host_url.rstrip("/") + CONNECT_WEBHOOK.path)
    rules = CallRules(voice.policy, plan, voice.routing)
    result = controller.act(leg_uuid, body.get("action"), body, rules, request.remote_addr or "unknown")
    if not result.accepted:
        headers = [("Retry-After", str(result.retry_after))] if result.retry_after else []
        return error_json_response(result.status, result.message, headers)
    return {"leg": leg_uuid, "action": body["action"], "outcome": result.outcome, "message": result.message}, 202
