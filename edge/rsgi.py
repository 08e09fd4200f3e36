"""`make run`'s front: each request reaches this RSGI app on its worker's event loop, and nothing a client does
slowly holds anything another request needs.

granian's WSGI interface gives a request a thread and makes that thread wait for the body; a client that sends
its body slowly (or never) held a thread as long as it liked, and a few of them held every thread. Here the body
is awaited on the loop, within BODY_SECONDS, then:
- an answer (/voice/answer, /voice/fallback) is decided on the loop itself: pure work, and its decision is queued
  for the writer, never waited for;
- an event is stored through the worker's EventChannel: waiting for its commit is a future, not a thread, so a
  stalled writer or database delays events (503 after calllog.client.WAIT_SECONDS) but no answer;
- anything else (the call log's page and API, /health, /metrics) is Flask's, run on a few threads of its own.
The voice routes are voice.VoiceWebhooks' own code, in the same order as under WSGI: refuse what can be refused
before the body (method, a browser's cross-site request, the token), read the body, then check, decide, record.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

from calllog.client import EventChannel
from edge.payloads import MAX_BODY_BYTES
from edge.voice import Reply, VoiceWebhooks, json_error
from edge.webhook import TOO_LARGE, WebhookRequest
from runtime.logs import LOGGER_NAME
from runtime.stop_signals import handlers_ready

# As long as a client may take to send its body once its headers are in (granian cuts off headers after the same).
BODY_SECONDS = 5
# Threads for the Flask routes: a person's page and scripts, never Vonage's webhooks.
FLASK_THREADS = 4
# Errors that mean the process is out of a resource (descriptors, memory, threads), not that the request is bad.
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN}
RESOURCE_RETRY_AFTER_SECONDS = 5

log = logging.getLogger(LOGGER_NAME)


class BodyProblem(Exception):
    """A body that was not read: `reply` says why, and the connection is closed after it."""

    def __init__(self, reply: Reply):
        super().__init__(reply.status)
        self.reply = reply


class Edge:
    """The RSGI application: the voice webhooks on the loop, Flask behind them on FLASK_THREADS threads."""

    def __init__(self, app):
        self.webhooks: VoiceWebhooks = app.wsgi_app
        self.flask = self.webhooks.app  # Flask's own WSGI callable, behind the voice webhooks
        self.events = EventChannel(app.extensions["call_log"].client.socket_path)
        self.pool = ThreadPoolExecutor(FLASK_THREADS, thread_name_prefix="flask")

    def __rsgi_init__(self, loop) -> None:
        # granian calls this once the loop's stop handlers are in place, before the loop runs; they hear a signal
        # only once it runs, so a stop that came while the worker was loading is handed over from the loop itself.
        loop.call_soon(handlers_ready)

    def __rsgi_del__(self, loop) -> None:
        self.events.close()
        self.pool.shutdown(wait=False)

    async def __rsgi__(self, scope, protocol) -> None:
        if scope.proto != "http":
            return
        try:
            reply, close = await self._serve(scope, protocol)
        except Exception as error:
            reply, close = _failure(error), True
        if isinstance(reply, tuple):
            status, headers, body = reply
            protocol.response_bytes(status, headers, body)
            return
        headers = reply.header_list()
        if close:
            headers.append(("Connection", "close"))
        if reply.status == 204:
            protocol.response_empty(204, headers)
        else:
            protocol.response_bytes(reply.status, headers, reply.body)

    async def _serve(self, scope, protocol) -> tuple[Reply | tuple, bool]:
        """The reply, and whether the connection is closed after it (a body not read whole)."""
        environ = wsgi_environ(scope)
        route = self.webhooks.routes.get(scope.path)
        if route is None:
            try:
                body = await read_body(environ, protocol)
            except BodyProblem as problem:
                return problem.reply, True
            return await self._flask(environ, body), False
        req = WebhookRequest(environ)
        refusal = self.webhooks.refuse_early(route, req)
        if refusal is not None:
            # Its body is not read: the connection cannot be used for another request.
            return refusal, environ.get("CONTENT_LENGTH") not in (None, "0") or "HTTP_TRANSFER_ENCODING" in environ
        try:
            req.body_received(await read_body(environ, protocol))
        except BodyProblem as problem:
            route.by_status[problem.reply.status].inc()
            return problem.reply, True
        if route.webhook.answers_calls:
            return self.webhooks.serve(route, req), False
        return await self.webhooks.serve_event(route, req, self.events), False

    async def _flask(self, environ: dict, body: bytes) -> tuple:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return await asyncio.get_running_loop().run_in_executor(self.pool, call_wsgi, self.flask, environ)


def wsgi_environ(scope) -> dict:
    """The WSGI environ of an RSGI request, without its body (wsgi.input is empty until the body is read)."""
    server_name, _, server_port = scope.server.rpartition(":")
    client, _, client_port = scope.client.rpartition(":")
    environ = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        # WSGI's path is the decoded path's bytes as latin-1; RSGI gives it decoded as UTF-8.
        "PATH_INFO": scope.path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": "HTTP/2" if scope.http_version == "2" else f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": client.strip("[]"),
        "REMOTE_PORT": client_port,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in scope.headers.items():
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:  # a repeated header; HTTP/2 sends a cookie in pieces, joined with "; " (RFC 9113, 8.2.3)
            value = f"{environ[key]}{'; ' if key == 'HTTP_COOKIE' else ', '}{value}"
        environ[key] = value
    return environ


async def read_body(environ: dict, protocol) -> bytes:
    """The whole body, read within BODY_SECONDS and at most MAX_BODY_BYTES. Raises BodyProblem: 413 over the
    limit (before a byte of it is read, when its length is announced), 408 too slow, 400 cut short."""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    length = environ.get("CONTENT_LENGTH")
    if not chunked:
        if length is None or length.strip() in ("", "0"):
            return b""
        if not length.strip().isdigit():
            raise BodyProblem(json_error(400, f"Content-Length is not a number of bytes: {length!r}"))
        if int(length) > MAX_BODY_BYTES:
            raise BodyProblem(json_error(413, TOO_LARGE))
    try:
        async with asyncio.timeout(BODY_SECONDS):
            return await (_chunked_body(protocol) if chunked else protocol())
    except TimeoutError:
        message = f"the body did not arrive within {BODY_SECONDS} s; Vonage sends a webhook's body at once"
        raise BodyProblem(json_error(408, message)) from None
    except BodyProblem:
        raise
    except Exception:  # granian's RSGIProtocolClosed, or a body that is not valid HTTP
        raise BodyProblem(json_error(400, "the body ended before its end (the client closed the connection)")) from None


async def _chunked_body(protocol) -> bytes:
    """A chunked body, chunk by chunk so that one over the limit is refused before it is all in memory.

    granian's chunk iterator hands out an empty chunk where the body ends, and a second one first when it ended
    because the connection broke before the last chunk: that second empty chunk is how a body cut short shows."""
    chunks, size = [], 0
    stream = protocol.__aiter__()
    while True:
        chunk = await stream.__anext__()
        if not chunk:
            try:
                await stream.__anext__()
            except StopAsyncIteration:
                return b"".join(chunks)
            raise BodyProblem(json_error(400, "the chunked body ended before its last chunk"))
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyProblem(json_error(413, TOO_LARGE))
        chunks.append(chunk)


def call_wsgi(app, environ: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run a WSGI app to its whole response: status, headers and body."""
    started: list = []

    def start_response(status: str, headers: list, exc_info=None):
        started[:] = [int(status[:3]), [(str(name), str(value)) for name, value in headers]]

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    return status, [(name, value) for name, value in headers if name.lower() != "content-length"], body


def _failure(error: Exception) -> Reply:
    """The reply to a request the edge itself failed on: 503 for a resource the process ran out of (descriptors,
    memory: it passes), else 500; never a traceback."""
    if isinstance(error, MemoryError) or (isinstance(error, OSError) and error.errno in RESOURCE_ERRNOS):
        log.error("request refused: the server is out of a resource (%s); answering 503", error)
        message = "the server is out of a resource for the moment (file descriptors or memory); send it again"
        return json_error(503, message, ("Retry-After", str(RESOURCE_RETRY_AFTER_SECONDS)))
    log.exception("unexpected error in the server's front")
    return json_error(500, "the server failed on this request; the log has the details")
