"""A stand-in of one region of Vonage's Voice API (the routes that act on a call in progress), over HTTPS on
127.0.0.1, checking each request as Vonage would and answering as it does (docs/platform.md, "Acting on a call in
progress"):

    PUT /v1/calls/{uuid}         {"action": hangup|mute|unmute|earmuff|unearmuff}, or a transfer to an NCCO: 204
    PUT|DELETE /v1/calls/{uuid}/talk   text (with language, style, loop, level): 200 {"message": "Talk started"}
    PUT /v1/calls/{uuid}/dtmf    digits: 200 {"message": "DTMF sent"}

A request without an RS256 application JWT that the application's public key verifies (with its application_id,
iat, exp and jti) answers 401; a leg this region does not hold answers 404 (as a call in another region does); a
body of the wrong shape answers 400 with Vonage's invalid_parameters. `throttle(n)` makes the next n requests 429
with Retry-After, `refuse_next` answers the next one with an error of the test's choosing. `on_hangup` is called with the leg of each hangup accepted (a test posts its `completed` event
back to the server, as Vonage would)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt

from vonage_helper.ncco_models import parse_ncco

CALL_ACTIONS = ("hangup", "mute", "unmute", "earmuff", "unearmuff")
TALK_FIELDS = {"text", "language", "style", "loop", "level", "premium", "language_code"}
RETRY_AFTER = "1"


@dataclass(frozen=True)
class VoiceRequest:
    """One request as the stand-in read it, and whether its JWT verified."""

    method: str
    path: str
    body: object
    content_type: str | None
    token_verified: bool
    claims: dict | None


class VoiceStandIn:
    """One region of the Voice API: the legs it holds, what it received, and its HTTPS server."""

    def __init__(self, certificate: tuple[Path, Path], application_id: str, public_key):
        self.application_id = application_id
        self.public_key = public_key
        self.legs: set[str] = set()
        self.holds_every_leg = False
        self.received: list[VoiceRequest] = []
        self.throttled = 0
        self.refusal: tuple[int, dict] | None = None
        self.on_hangup: Callable[[str], None] = lambda leg: None
        self.lock = threading.Lock()
        self.got_one = threading.Condition(self.lock)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"https://{self.host}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def hold(self, leg: str) -> None:
        """This region serves the leg `leg`."""
        with self.lock:
            self.legs.add(leg)

    def throttle(self, requests: int) -> None:
        """Answer the next `requests` requests 429, with Retry-After."""
        with self.lock:
            self.throttled = requests

    def refuse_next(self, status: int, document: dict) -> None:
        """Answer the next request to a leg it holds with `status` and `document` (an error Vonage gives)."""
        with self.lock:
            self.refusal = (status, document)

    def requests(self) -> list[VoiceRequest]:
        with self.lock:
            return list(self.received)

    def wait_for(self, count: int, seconds: float = 15) -> list[VoiceRequest]:
        """The requests received, once there are at least `count` (AssertionError after `seconds`)."""
        with self.got_one:
            if not self.got_one.wait_for(lambda: len(self.received) >= count, seconds):
                raise AssertionError(f"the stand-in received {len(self.received)} requests, not {count}")
            return list(self.received)

    def answer(self, request: VoiceRequest) -> tuple[int, dict | None]:
        """(status, JSON document) for a request, as Vonage answers it."""
        parts = request.path.strip("/").split("/")
        if not request.token_verified:
            return 401, {"type": "https://developer.nexmo.com/api-errors#unauthorized", "title": "Unauthorized"}
        if parts[:2] != ["v1", "calls"] or len(parts) not in (3, 4):
            return 404, {"title": "Not Found", "detail": f"no route {request.path}"}
        leg = parts[2]
        with self.lock:
            if leg not in self.legs and not self.holds_every_leg:
                return 404, {"title": "Not Found", "detail": f"Call {leg} was not found"}
            if self.throttled:
                self.throttled -= 1
                return 429, {"title": "Too Many Requests"}
            if self.refusal is not None:
                refusal, self.refusal = self.refusal, None
                return refusal
        route = parts[3] if len(parts) == 4 else None
        problem = _shape_problem(route, request)
        if problem is not None:
            return 400, {"title": "Bad Request", "invalid_parameters": [problem]}
        if route is None:
            if request.body["action"] == "hangup":
                self.on_hangup(leg)
            return 204, None
        if route == "talk":
            return 200, {"message": "Talk started" if request.method == "PUT" else "Talk stopped", "uuid": leg}
        return 200, {"message": "DTMF sent", "uuid": leg}


def _shape_problem(route: str | None, request: VoiceRequest) -> dict | None:
    """What is wrong with the request's method, content type or body for its route, as Vonage's invalid_parameters."""
    body = request.body
    if route == "talk" and request.method == "DELETE":
        return None if body is None else {"name": "body", "reason": "DELETE takes no body"}
    if request.method != "PUT":
        return {"name": "method", "reason": f"{request.method} is not allowed"}
    if request.content_type != "application/json" or not isinstance(body, dict):
        return {"name": "body", "reason": "a JSON object with Content-Type application/json is required"}
    if route == "talk":
        if not isinstance(body.get("text"), str) or not body["text"]:
            return {"name": "text", "reason": "is required"}
        unknown = set(body) - TALK_FIELDS
        return {"name": sorted(unknown)[0], "reason": "is not a talk field"} if unknown else None
    if route == "dtmf":
        digits = body.get("digits")
        ok = isinstance(digits, str) and digits and set(digits) <= set("0123456789*#p") and set(body) == {"digits"}
        return None if ok else {"name": "digits", "reason": "must be 0-9, *, # or p"}
    if route is not None:
        return {"name": "path", "reason": f"no route {route}"}
    action = body.get("action")
    if action in CALL_ACTIONS:
        return None if set(body) == {"action"} else {"name": "body", "reason": "only action is allowed"}
    if action != "transfer":
        return {"name": "action", "reason": f"{action!r} is not an action"}
    destination = body.get("destination")
    if not isinstance(destination, dict) or destination.get("type") != "ncco" or "ncco" not in destination:
        return {"name": "destination", "reason": "must be {type: ncco, ncco: [...]} or {type: ncco, url: [...]}"}
    try:
        parse_ncco(destination["ncco"])
    except (ValueError, TypeError) as error:
        return {"name": "destination.ncco", "reason": str(error).splitlines()[0]}
    return None


def _verified(authorization: str | None, public_key, application_id: str) -> dict | None:
    if not authorization or not authorization.startswith("Bearer "):
        return None
    try:
        claims = jwt.decode(
            authorization.removeprefix("Bearer "),
            public_key,
            algorithms=["RS256"],
            options={"require": ["iat", "exp", "jti", "application_id"]},
        )
    except jwt.InvalidTokenError:
        return None
    return claims if claims["application_id"] == application_id else None


def _handler(stand_in: VoiceStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            claims = _verified(self.headers.get("Authorization"), stand_in.public_key, stand_in.application_id)
            request = VoiceRequest(
                self.command, self.path, body, self.headers.get("Content-Type"), claims is not None, claims
            )
            status, document = stand_in.answer(request)
            payload = b"" if document is None else json.dumps(document).encode()
            self.send_response(status)
            if document is not None:
                self.send_header("Content-Type", "application/json")
            if status == 429:
                self.send_header("Retry-After", RETRY_AFTER)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            # Recorded once answered: a test that saw it may count on its answer having been sent.
            with stand_in.got_one:
                stand_in.received.append(request)
                stand_in.got_one.notify_all()

        do_PUT = do_DELETE = do_POST = do_GET = _serve

        def log_message(self, *args):
            pass

    return Handler
