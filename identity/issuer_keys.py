"""An OpenID issuer's signing keys: found through its discovery document (or a JWKS address given), fetched with
short timeouts, cached, and fetched again for a key id not seen yet at most once a minute.

While the issuer cannot be reached, the cached keys go on working; with none cached, KeysUnavailable says when to
try again. The clock and the fetch are passed in, so the rules are tested without waiting or a network.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from jwt import PyJWK, PyJWKError, PyJWKSetError
from jwt.api_jwk import PyJWKSet

from config import identity_url

# Each request to the issuer gets this long in all (connect, and the whole answer): a slow issuer holds one of
# the few Flask threads for no longer than this, twice over (discovery, then the keys).
FETCH_SECONDS = 3.0
LARGEST_ANSWER = 512 * 1024
# A key id the cache does not hold makes it fetch the keys again (the issuer rotated them), once a minute at most:
# a stream of made-up key ids costs the issuer one request a minute, not one each.
UNKNOWN_KEY_REFETCH_SECONDS = 60.0
# Keys are fetched again when this old, in case one was withdrawn; if that fails the cached ones are kept.
KEYS_MAX_AGE_SECONDS = 3600.0
# After a failed fetch, the next is tried no sooner than this: requests while the issuer is down do not each wait.
RETRY_SECONDS = 10
KEY_TYPES = ("RSA", "EC", "OKP")


class KeysUnavailable(Exception):
    """No usable key can be had now (the issuer is unreachable or answers wrongly); try again in `retry_after` s."""

    def __init__(self, problem: str, retry_after: int):
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


class UnknownKey(Exception):
    """The token names a key id the issuer does not publish."""


class FetchFailed(Exception):
    """The issuer's discovery document or keys could not be had; the message says what went wrong."""


class _SecureRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an address an issuer may have (https, or http on loopback): a key set fetched
    over plain http after a redirect could be anyone's."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            identity_url(newurl)
        except ValueError as problem:
            raise FetchFailed(f"{req.full_url} redirects elsewhere: {problem}") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_SecureRedirects)


def fetch_json(url: str, timeout: float = FETCH_SECONDS) -> object:
    """The JSON document at `url`, within `timeout` seconds in all; FetchFailed otherwise."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _opener.open(request, timeout=timeout) as answer:
            body = bytearray()
            while chunk := answer.read(16384):
                body += chunk
                if len(body) > LARGEST_ANSWER:
                    raise FetchFailed(f"{url} answered more than {LARGEST_ANSWER} bytes")
                if time.monotonic() > deadline:
                    raise FetchFailed(f"{url} did not answer within {timeout:g} s")
    except urllib.error.HTTPError as error:
        raise FetchFailed(f"{url} answered {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise FetchFailed(f"{url} did not answer within {timeout:g} s") from None
        raise FetchFailed(f"cannot reach {url} ({reason})") from None
    try:
        return json.loads(body)
    except ValueError:
        raise FetchFailed(f"{url} answered something that is not JSON") from None


class IssuerJwks:
    """Where an issuer's keys are, and fetching them: `fetch()` returns the published keys' JWK documents."""

    def __init__(self, issuer: str, jwks_url: str | None = None, get: Callable[[str], object] = fetch_json):
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._discovered: str | None = None
        self._get = get

    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def fetch(self) -> list[dict]:
        url = self.jwks_url or self._discovered or self._discover()
        document = self._get(url)
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            self._discovered = None  # found through discovery: look again next time
            raise FetchFailed(f"{url} is not a JWKS (a JSON object with a list of keys)")
        return [key for key in keys if isinstance(key, dict)]

    def _discover(self) -> str:
        url = self.discovery_url()
        document = self._get(url)
        if not isinstance(document, dict):
            raise FetchFailed(f"{url} is not an OpenID discovery document")
        if document.get("issuer") != self.issuer:
            raise FetchFailed(
                f"{url} names the issuer {document.get('issuer')!r}, not CLIENT_AUTH_ISSUER ({self.issuer!r})"
            )
        jwks_uri = document.get("jwks_uri")
        try:
            self._discovered = identity_url(jwks_uri) if isinstance(jwks_uri, str) else None
        except ValueError as problem:
            raise FetchFailed(f"{url}: its jwks_uri: {problem}") from None
        if self._discovered is None:
            raise FetchFailed(f"{url} has no jwks_uri")
        return self._discovered


def usable_keys(documents: list[dict]) -> dict[str | None, PyJWK]:
    """The signing keys among JWK documents, by key id; keys for encryption, symmetric or broken ones left out."""
    chosen = [
        document for document in documents if document.get("kty") in KEY_TYPES and document.get("use", "sig") == "sig"
    ]
    try:
        keys = PyJWKSet(chosen).keys if chosen else []
    except (PyJWKSetError, PyJWKError):
        keys = []
    return {key.key_id: key for key in keys}


class IssuerKeys:
    """The cache of one issuer's keys, safe to share between a worker's threads."""

    def __init__(self, source: Callable[[], list[dict]], clock: Callable[[], float] = time.monotonic):
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at: float | None = None  # the last fetch that gave keys
        self._unknown_fetch_at: float | None = None  # the last fetch made for a key id not cached
        self._failed_at: float | None = None
        self._problem = ""
        self.fetches = 0

    def key_for(self, key_id: str | None) -> PyJWK:
        """The key `key_id` names (or the issuer's only key, for a token without one); UnknownKey or KeysUnavailable."""
        with self._lock:
            now = self._clock()
            fetched = False
            if self._fetched_at is None or now - self._fetched_at >= KEYS_MAX_AGE_SECONDS:
                fetched = self._fetch(now)
            key = self._find(key_id)
            may_refetch = self._unknown_fetch_at is None or now - self._unknown_fetch_at >= UNKNOWN_KEY_REFETCH_SECONDS
            if key is None and not fetched and self._keys and may_refetch:
                self._unknown_fetch_at = now
                self._fetch(now)
                key = self._find(key_id)
            if key is not None:
                return key
            if not self._keys or self._failed_at is not None:
                # Nothing cached, or the issuer is failing: the key may well exist, so this is not the caller's fault.
                raise KeysUnavailable(self._problem or "the issuer publishes no signing key", self._retry_after(now))
            raise UnknownKey(key_id)

    def _find(self, key_id: str | None) -> PyJWK | None:
        if key_id is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(key_id) if key_id is not None else None

    def _fetch(self, now: float) -> bool:
        """Fetch the keys unless a fetch failed less than RETRY_SECONDS ago; whether the cache was replaced."""
        if self._failed_at is not None and now - self._failed_at < RETRY_SECONDS:
            return False
        self.fetches += 1
        try:
            keys = usable_keys(self._source())
            if not keys:
                raise FetchFailed("the issuer's JWKS holds no usable signing key")
        except FetchFailed as problem:
            self._failed_at, self._problem = now, str(problem)
            return False
        self._keys, self._fetched_at, self._failed_at, self._problem = keys, now, None, ""
        return True

    def _retry_after(self, now: float) -> int:
        if self._failed_at is None:
            return RETRY_SECONDS
        return max(1, int(RETRY_SECONDS - (now - self._failed_at) + 0.999))
