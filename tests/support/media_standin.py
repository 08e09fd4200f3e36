"""A stand-in of Vonage's media host (the `recording_url` of a recording webhook, https://api.nexmo.com/v1/files/ID),
served over HTTPS on 127.0.0.1, and `Catcher`, a host the application's JWT must never reach.

    GET /v1/files/{id}    the recording registered with `add`: audio/wav when the id ends in ".wav", else audio/mpeg
                          (Vonage's default format), with its Content-Length; a Range header is ignored (200, whole)

Each request must carry `Authorization: Bearer <application JWT>`, RS256 and verified by the public key of the
application's pair, with `application_id`, `iat` and `jti` claims and, when it has `exp`, not expired; any other is
answered 401 with a JSON body like Vonage's. An unknown id is 404, a method other than GET 405. Every request is
recorded (`requests`, `requests_for`, `wait_for`), whatever it was answered.

`fail(id, kind, times, **options)` makes the next `times` authorized requests for one recording fail, then it is
served again; the kinds are in FAILURES, their options in `fail`'s docstring.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import jwt

FILES_PATH = "/v1/files/"
FAILURES = ("500", "503", "429", "cut", "short", "slow", "401", "redirect")
ERROR_TYPE = "https://developer.nexmo.com/api-errors#"
HELD_AT_MOST = 120  # seconds a "slow" request is held when the test neither releases nor closes


@dataclass(frozen=True)
class Request:
    """One request as a stand-in read it. `at`: time.monotonic() on arrival (the same clock in every process on this
    machine); `answer`: what it was answered, a status ("200", "401", "404") or the failure kind ("cut", "slow")."""

    method: str
    path: str
    authorization: str | None
    headers: dict[str, str]
    at: float
    answer: str

    @property
    def recording_id(self) -> str | None:
        return self.path.removeprefix(FILES_PATH) if self.path.startswith(FILES_PATH) else None


@dataclass
class _Failure:
    kind: str
    times: int
    options: dict


class _HttpsServer:
    """A ThreadingHTTPServer on 127.0.0.1 in TLS with the tests' certificate, serving in a thread of its own; the
    requests it received. Subclasses answer in `respond(handler)`."""

    def __init__(self, certificate: tuple[Path, Path], tls: bool = True):
        self.requests: list[Request] = []
        self.lock = threading.Condition()
        self.closing = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{self.host}{path}"

    def close(self) -> None:
        self.closing.set()  # a held request is let go, unanswered
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def record(self, handler: BaseHTTPRequestHandler, answer: str) -> None:
        request = Request(
            handler.command,
            urlsplit(handler.path).path,
            handler.headers.get("Authorization"),
            dict(handler.headers.items()),
            time.monotonic(),
            answer,
        )
        with self.lock:
            self.requests.append(request)
            self.lock.notify_all()

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError


class MediaStandIn(_HttpsServer):
    """Vonage's media host: the recordings registered with `add`, served to the application's JWT, failing on demand."""

    def __init__(self, certificate: tuple[Path, Path], application_key, application_id: str | None = None):
        """`application_key`: the application's RSA key pair (its public half, or the private key, whose public half
        is taken), which the JWTs must verify with; `application_id`, when given, the one their claim must name."""
        self.application_key = getattr(application_key, "public_key", lambda: application_key)()
        self.application_id = application_id
        self.recordings: dict[str, bytes] = {}
        self.failures: dict[str, deque[_Failure]] = {}
        self.held: dict[str, list[threading.Event]] = {}
        super().__init__(certificate)

    def add(self, recording_id: str, data: bytes) -> str:
        """Register a recording; its URL, as a webhook's `recording_url` would carry it."""
        with self.lock:
            self.recordings[recording_id] = bytes(data)
        return self.url(FILES_PATH + recording_id)

    def fail(self, recording_id: str, kind: str, times: int = 1, **options) -> None:
        """Answer the next `times` authorized requests for `recording_id` (registered or not) in this way, after any
        failures already queued for it; then serve it normally. Options:
            "429": retry_after (seconds, default 1) for its Retry-After header; "503": retry_after, if given
            "cut": sent (bytes of the body sent before the connection is closed, default half); the headers carry
                the whole Content-Length, so the client sees the body end early
            "short": sent (default half): a complete 200 whose Content-Length is what is sent
            "slow": held until `release(recording_id)` (then served normally) or `close` (then dropped unanswered)
            "redirect": location (required): a 302 to it, with no body
            "500", "401": no options."""
        assert kind in FAILURES, kind
        assert kind != "redirect" or "location" in options, "a redirect needs location="
        with self.lock:
            self.failures.setdefault(recording_id, deque()).append(_Failure(kind, times, options))

    def release(self, recording_id: str) -> None:
        """Let the requests for `recording_id` held by "slow" now go on, to be served normally; a later "slow" one
        is held again."""
        with self.lock:
            for released in self.held.pop(recording_id, []):
                released.set()

    def requests_for(self, recording_id: str) -> list[Request]:
        with self.lock:
            return [request for request in self.requests if request.recording_id == recording_id]

    def wait_for(self, recording_id: str, count: int = 1, timeout: float = 10) -> list[Request]:
        """The requests for `recording_id` once there are at least `count` (for a test to know a request arrived,
        a "slow" one is held, without sleeping); AssertionError after `timeout` seconds."""
        with self.lock:
            arrived = self.lock.wait_for(lambda: len(self.requests_for(recording_id)) >= count, timeout)
        assert arrived, f"{len(self.requests_for(recording_id))} requests for {recording_id}, not {count}"
        return self.requests_for(recording_id)

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        recording_id = path.removeprefix(FILES_PATH) if path.startswith(FILES_PATH) else None
        if handler.command != "GET":
            self._error(handler, 405, "Method Not Allowed", f"{handler.command} is not supported")
        elif not self._authorized(handler.headers.get("Authorization")):
            self._error(handler, 401, "Unauthorized", "You did not provide correct credentials.")
        elif recording_id and (failure := self._next_failure(recording_id)):
            self._fail(handler, recording_id, failure)
        else:
            self._serve(handler, recording_id)

    def _authorized(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization.removeprefix("Bearer ")
        try:
            claims = jwt.decode(token, self.application_key, algorithms=["RS256"], options={"require": ["iat", "jti"]})
        except jwt.InvalidTokenError:
            return False
        if not claims.get("application_id"):
            return False
        return self.application_id is None or claims["application_id"] == self.application_id

    def _next_failure(self, recording_id: str) -> _Failure | None:
        with self.lock:
            queued = self.failures.get(recording_id)
            if not queued:
                return None
            failure = queued[0]
            failure.times -= 1
            if failure.times <= 0:
                queued.popleft()
            return failure

    def _serve(self, handler: BaseHTTPRequestHandler, recording_id: str | None, answer: str = "200") -> None:
        with self.lock:
            data = self.recordings.get(recording_id) if recording_id else None
        if data is None:
            self._error(handler, 404, "Not Found", f"No file was found at {handler.path}")
            return
        self.record(handler, answer)
        _send(handler, 200, data, _content_type(recording_id))

    def _fail(self, handler: BaseHTTPRequestHandler, recording_id: str, failure: _Failure) -> None:
        kind, options = failure.kind, failure.options
        if kind == "slow":
            self._hold(handler, recording_id)
            return
        self.record(handler, kind)
        with self.lock:
            data = self.recordings.get(recording_id, b"")
        sent = options.get("sent", len(data) // 2)
        if kind == "cut":
            _send(handler, 200, data[:sent], _content_type(recording_id), length=len(data))
            handler.close_connection = True
        elif kind == "short":
            _send(handler, 200, data[:sent], _content_type(recording_id))
        elif kind == "redirect":
            _send(handler, 302, b"", "text/plain", ("Location", options["location"]))
        elif kind == "401":
            _send_error(handler, 401, "Unauthorized", "You did not provide correct credentials.")
        elif kind in ("429", "503"):
            default = 1 if kind == "429" else None
            retry_after = options.get("retry_after", default)
            headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
            title = "Too Many Requests" if kind == "429" else "Service Unavailable"
            _send_error(handler, int(kind), title, "Please try again later.", *headers)
        else:
            _send_error(handler, 500, "Internal Server Error", "Something went wrong.")

    def _hold(self, handler: BaseHTTPRequestHandler, recording_id: str) -> None:
        released = threading.Event()
        with self.lock:
            self.held.setdefault(recording_id, []).append(released)
        self.record(handler, "slow")
        deadline = time.monotonic() + HELD_AT_MOST
        while not (released.is_set() or self.closing.is_set()) and time.monotonic() < deadline:
            released.wait(0.05)
        if released.is_set() and not self.closing.is_set():
            self._serve_unrecorded(handler, recording_id)
        else:
            handler.close_connection = True

    def _serve_unrecorded(self, handler: BaseHTTPRequestHandler, recording_id: str) -> None:
        with self.lock:
            data = self.recordings.get(recording_id)
        if data is None:
            _send_error(handler, 404, "Not Found", f"No file was found at {handler.path}")
        else:
            _send(handler, 200, data, _content_type(recording_id))

    def _error(self, handler: BaseHTTPRequestHandler, status: int, title: str, detail: str) -> None:
        self.record(handler, str(status))
        _send_error(handler, status, title, detail)


class Catcher(_HttpsServer):
    """A host that is not Vonage's (an attacker's, or a redirect's target): it answers any request with 200 and
    `body` and records it, so a test can assert the application's JWT never reached it. HTTPS with the tests'
    certificate, or plain HTTP with tls=False."""

    def __init__(self, certificate: tuple[Path, Path], body: bytes = b"not the recording", tls: bool = True):
        self.body = body
        super().__init__(certificate, tls)

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        self.record(handler, "200")
        _send(handler, 200, self.body, "audio/mpeg")

    def authorizations(self) -> list[str]:
        """Every Authorization header it was sent (empty when none was)."""
        with self.lock:
            return [request.authorization for request in self.requests if request.authorization is not None]


def _content_type(recording_id: str | None) -> str:
    return "audio/wav" if (recording_id or "").endswith(".wav") else "audio/mpeg"


def _send(handler, status: int, body: bytes, content_type: str, *headers: tuple[str, str], length=None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def _send_error(handler, status: int, title: str, detail: str, *headers: tuple[str, str]) -> None:
    """A JSON error shaped as Vonage's API errors are."""
    slug = title.lower().replace(" ", "-")
    document = {"type": ERROR_TYPE + slug, "title": title, "detail": detail, "instance": handler.path}
    _send(handler, status, json.dumps(document).encode(), "application/json", *headers)


def _handler(server: _HttpsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Vonage's host: a cut must be the close that ends the body

        def _respond(self):
            # Read any body, so the next request on this kept-alive connection starts where it should.
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                server.respond(self)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                self.close_connection = True  # the client went away: nothing to answer

        do_GET = do_POST = do_PUT = do_DELETE = _respond

        def log_message(self, *args):
            pass

    return Handler
