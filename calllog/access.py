"""Who may read the call log, and what its answers tell a browser.

The token comes in three ways, each accepted only where it belongs:

- `?token=` (the link `make run` prints) only by the page, which moves it into a cookie and drops it from the
  address at once: a token in an address ends up in history, proxy logs and Referer headers;
- the page's cookie by the page and the API (the page's own script calls the API with it). The cookie is host-only,
  HttpOnly, SameSite=Strict, Secure over TLS, and named after the port the browser reached the server on
  (`call_log_token_3000`): browsers share cookies between every port of a host, so two servers on one machine
  would otherwise overwrite each other's;
- `Authorization: Bearer <token>` by all three (scripts, Prometheus).

Wrong tokens are counted per client address (FailedTokens): after FAILURE_LIMIT of them within FAILURE_WINDOW
seconds, the address gets 429 from the page, the API and /metrics, the right token included, until the oldest of
them is FAILURE_WINDOW old. The count is kept in the memory of each worker process, so with N workers an address
can try up to N times FAILURE_LIMIT before every worker refuses it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from urllib.parse import quote, urlencode

from flask import Flask, current_app, request
from werkzeug.routing import PathConverter

from runtime.logs import LOGGER_NAME
from runtime.metrics import counted_by

log = logging.getLogger(f"{LOGGER_NAME}.call_log")

COOKIE_PREFIX = "call_log_token_"
FAILURE_LIMIT = 10
FAILURE_WINDOW = 60.0
MAX_ADDRESSES = 10_000
# What each surface's failures are counted and logged as.
SURFACES = ("page", "api", "metrics")
EXTENSION = "call_log_access"

# The page's own files are the only ones it loads; nothing may frame it, and nothing it links to learns its address.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "media-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The API's and /metrics' answers: never taken for another type, never kept by a cache.
API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

# {hint} follows the header's name (for Prometheus, where its scrape configuration puts it).
QUERY_TOKEN_REFUSED = (
    "'?token=' is taken only by the page (/calls): a token in an address ends up in logs and history; "
    "send 'Authorization: Bearer <token>'{hint} instead; the server prints the token at start-up (CALL_LOG_TOKEN)"
)


class ConversationConverter(PathConverter):
    """A conversation id in a route: any text, slashes included (a leading one, or two in a row, too)."""

    regex = ".+?"
    part_isolating = False


def add_conversation_converter(state) -> None:
    """Blueprint setup: makes `<conversation:...>` known to the app before the blueprint's routes are added."""
    state.app.url_map.converters.setdefault("conversation", ConversationConverter)


def address_key(address: str) -> str:
    """What failures are counted under: an IPv4 address itself, an IPv6 address by its /64 (one host commonly
    holds a whole /64), anything else as it is."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class FailedTokens:
    """Wrong tokens by client address, in this process's memory: each address's last `limit` failures within
    `window` seconds. At most `max_addresses` are remembered; the one whose last failure is oldest goes first, and
    an address whose failures are all older than the window is forgotten as soon as anything is recorded."""

    def __init__(
        self,
        limit: int = FAILURE_LIMIT,
        window: float = FAILURE_WINDOW,
        max_addresses: int = MAX_ADDRESSES,
        clock=time.monotonic,
    ):
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self.clock = clock
        self._lock = threading.Lock()
        # address key -> its failures' times, oldest first; the addresses in the order of their last failure.
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until `address` may try again; None when it may now."""
        now = self.clock()
        with self._lock:
            times = self._failures.get(address_key(address))
            if not times:
                return None
            recent = [moment for moment in times if moment > now - self.window]
            if len(recent) < self.limit:
                return None
            return max(1, math.ceil(recent[0] + self.window - now))

    def record(self, address: str) -> int:
        """Counts a wrong token from `address`; returns how many it has now within the window."""
        now = self.clock()
        key = address_key(address)
        with self._lock:
            times = [moment for moment in self._failures.pop(key, ()) if moment > now - self.window]
            times.append(now)
            self._failures[key] = times[-self.limit :]
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
            while self._failures:
                oldest = next(iter(self._failures.values()))
                if oldest[-1] > now - self.window:
                    break
                self._failures.popitem(last=False)
            return len(self._failures[key])


class Access:
    """One app's record of wrong tokens, and its counter of them (voice_call_log_token_failures_total)."""

    def __init__(self, app: Flask):
        self.failed = FailedTokens()
        self.counted = counted_by(
            "voice_call_log_token_failures",
            "Requests to the call log's page, API or /metrics with a wrong token, by surface",
            "route",
            SURFACES,
            app.extensions["metrics"].registry,
        )


def init_app(state) -> None:
    """Blueprint setup (calllog.api): one Access per app, in app.extensions."""
    if EXTENSION not in state.app.extensions:
        state.app.extensions[EXTENSION] = Access(state.app)


def _access() -> Access:
    return current_app.extensions[EXTENSION]


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time check of a call-log token."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def query_token() -> str | None:
    return request.args.get("token") or None


def came_over_tls() -> bool:
    """The browser reached the server over TLS: directly, or through a proxy that says so (ngrok does)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def cookie_name() -> str:
    """The page's cookie's name on the port the browser reached: the Host header's, else its scheme's default."""
    host = request.host
    _, colon, port = host.rpartition(":")
    if not (colon and re.fullmatch(r"[0-9]{1,5}", port)):
        port = "443" if came_over_tls() else "80"
    return f"{COOKIE_PREFIX}{int(port)}"


def cookie_token() -> str | None:
    return request.cookies.get(cookie_name()) or None


def set_token_cookie(response, token: str) -> None:
    """The page's cookie: host-only, HttpOnly, SameSite=Strict, for every path, Secure whenever TLS is in play."""
    public_url = current_app.config["SETTINGS"].public_url or ""
    secure = came_over_tls() or public_url.startswith("https:")
    response.set_cookie(cookie_name(), token, path="/", httponly=True, samesite="Strict", secure=secure)


def address_without_token() -> str:
    """The request's own address with `token` left out of its query (the rest kept, in order)."""
    # PATH_INFO holds the path's bytes as latin-1 text (WSGI): quoted from those, any id survives the round trip.
    path = (request.environ.get("SCRIPT_NAME", "") + request.environ.get("PATH_INFO", "")).encode("latin-1")
    kept = [(name, value) for name, value in request.args.items(multi=True) if name != "token"]
    return quote(path, safe="/") + (f"?{urlencode(kept)}" if kept else "")


def locked_out() -> int | None:
    """Seconds until this request's address may try a token again; None when it may now."""
    return _access().failed.retry_after(request.remote_addr or "")


def check(surface: str, given: str | None) -> bool:
    """Whether `given` is the call log's token; a wrong one is counted against the request's address and logged
    (no token at all is not an attempt, and is neither)."""
    if token_matches(given, current_app.config["CALL_LOG_TOKEN"]):
        return True
    if given is not None:
        access = _access()
        address = request.remote_addr or "unknown"
        failures = access.failed.record(address)
        access.counted[surface].inc()
        route = request.url_rule.rule if request.url_rule is not None else request.path
        wait = access.failed.retry_after(address)
        then = "" if wait is None else f"; refusing its requests for {wait} s"
        log.warning(
            "wrong call-log token from %s on %s %s (%d of %d allowed in %d s)%s",
            address,
            request.method,
            route,
            failures,
            access.failed.limit,
            int(access.failed.window),
            then,
        )
    return False


def too_many_message(seconds: int) -> str:
    return (
        f"too many wrong call-log tokens from this address; try again in {seconds} s (Retry-After) "
        "with the token the server printed at start-up (CALL_LOG_TOKEN)"
    )


def add_headers(response, headers: dict[str, str]):
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response
