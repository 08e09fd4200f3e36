"""Signed webhooks: check Vonage's `Authorization: Bearer <JWT>` fully (HS256, payload hash, freshness, issuer)."""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import re
import string
import uuid
import warnings
from collections.abc import Sequence

ALGORITHM = "HS256"
ISSUER = "Vonage"
MAX_TOKEN_LENGTH = 4096
# JSON as JavaScript's JSON.stringify writes it; one encoder, not one per call.
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
UNSIGNED = "no Authorization header (Vonage retries an unsigned callback after a 5xx)"


# Why a webhook was refused, in a word from a fixed set (a metrics label); the reason says the rest in a sentence.
UNSIGNED_CODE = "unsigned"
UNREADABLE_CODE = "unreadable"  # the body could not be read, so it could not be checked (see voice.check_signature)
REFUSAL_CODES = (
    UNSIGNED_CODE,  # no Authorization header
    "not_bearer",  # an Authorization header that is not "Bearer <token>"
    "malformed",  # not a JWT as Vonage writes one: too long, not canonical base64url, not JSON, extensions
    "wrong_algorithm",  # a JWT that is not HS256
    "bad_signature",  # signed with no VONAGE_SIGNATURE_SECRET
    "missing_claim",  # no payload_hash or no iat
    "bad_claim",  # a time claim that is not a whole number of seconds
    "stale",  # iat further from now than SIGNATURE_MAX_AGE
    "expired",  # exp passed
    "not_yet_valid",  # nbf not reached
    "wrong_issuer",  # iss is not Vonage
    "payload_mismatch",  # payload_hash is not the request's
    UNREADABLE_CODE,
)


class SignatureError(Exception):
    """A webhook that must not be processed: `code` from REFUSAL_CODES, `reason` a sentence for people.
    `status`: 503 for no signature at all (Vonage retries it), else 401."""

    def __init__(self, code: str, reason: str):
        if code not in REFUSAL_CODES:
            raise ValueError(f"{code!r} is not one of REFUSAL_CODES")
        super().__init__(reason)
        self.code = code
        self.status = 503 if code == UNSIGNED_CODE else 401
        self.reason = reason


def payload_for_hash(method: str, body: bytes, query_pairs: Sequence[tuple[str, str]]) -> bytes:
    """The bytes Vonage hashes into `payload_hash`.

    POST (any method with a body): the raw body as received. GET: the query parameters as a JSON
    object in their original order, written as JavaScript's JSON.stringify writes it (no whitespace,
    non-ASCII as-is); a repeated parameter becomes an array, as Node's query parser makes it.
    """
    if method != "GET":
        return body
    params: dict[str, str | list[str]] = {}
    for key, value in query_pairs:
        if key in params:
            previous = params[key]
            params[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            params[key] = value
    return _compact(params).encode("utf-8")


def payload_hash(method: str, body: bytes, query_pairs: Sequence[tuple[str, str]]) -> str:
    """SHA-256 hex of the request's payload (see payload_for_hash)."""
    return hashlib.sha256(payload_for_hash(method, body, query_pairs)).hexdigest()


def verify_webhook(
    authorization: str | None,
    method: str,
    body: bytes,
    query_pairs: Sequence[tuple[str, str]],
    secrets: Sequence[str],
    now: float,
    max_age: int = 300,
) -> dict:
    """Check one webhook's signature against any of `secrets`; return its claims or raise SignatureError.

    `authorization` is the Authorization header as received (None when absent); `now` is the
    current Unix time; `max_age` is how far `iat` may be from `now`, either way, in seconds.
    """
    claims = verify_token(authorization, secrets, now, max_age)
    check_payload(claims, method, body, query_pairs)
    return claims


def verify_token(authorization: str | None, secrets: Sequence[str], now: float, max_age: int = 300) -> dict:
    """The first half of the check, which needs no body: the token itself (HS256 with one of `secrets`, a fresh
    iat, exp and nbf, the issuer, a payload_hash claim). Returns its claims or raises SignatureError.

    A server that checks this before reading a body never waits on the body of a request nobody signed.
    """
    if authorization is None:
        raise SignatureError(UNSIGNED_CODE, UNSIGNED)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise SignatureError("not_bearer", "the Authorization header is not 'Bearer <JWT>'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise SignatureError("malformed", f"the token is over {MAX_TOKEN_LENGTH} characters")
    claims = _verified_hs256(token, secrets)
    if not isinstance(claims.get("payload_hash"), str):
        raise SignatureError("missing_claim", "the token has no payload_hash")
    issued_at = _time_claim(claims, "iat")
    if issued_at is None:
        raise SignatureError("missing_claim", "the token has no iat (issued-at time)")
    if abs(now - issued_at) > max_age:
        raise SignatureError("stale", f"the token was issued {int(now - issued_at)} s from now, outside ±{max_age} s")
    expires, not_before = _time_claim(claims, "exp"), _time_claim(claims, "nbf")
    if expires is not None and now >= expires:
        raise SignatureError("expired", "the token has expired (exp)")
    if not_before is not None and now < not_before:
        raise SignatureError("not_yet_valid", "the token is not valid yet (nbf)")
    if "iss" in claims and claims["iss"] != ISSUER:
        raise SignatureError("wrong_issuer", f"the token's issuer is {claims['iss']!r}, not {ISSUER!r}")
    return claims


def check_payload(claims: dict, method: str, body: bytes, query_pairs: Sequence[tuple[str, str]]) -> None:
    """The second half: the verified token's payload_hash must be the request's own. Raises SignatureError."""
    expected_hash = payload_hash(method, body, query_pairs)
    if not hmac.compare_digest(claims["payload_hash"].lower().encode(), expected_hash.encode()):
        raise SignatureError("payload_mismatch", "payload_hash does not match the request's payload")


def _time_claim(claims: dict, name: str) -> int | None:
    """A time claim in whole seconds, or None when absent. Anything else (a fraction, NaN, infinity, text)
    is refused: NaN compares false with everything, so such a token would never expire."""
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise SignatureError("bad_claim", f"the token's {name} is not a whole number of seconds")
    return value


def _segment(text: str) -> bytes:
    """A JWT segment's bytes. Only the canonical base64url spelling is read: the decoder skips characters
    outside its alphabet and ignores padding and unused bits, so one token could otherwise be re-spelt
    in many ways and still verify."""
    if not _canonical_base64url(text):
        raise SignatureError("malformed", "the token is not a JWT: a part is not written in canonical base64url")
    try:
        return binascii.a2b_base64(text.encode("ascii").translate(_TO_BASE64) + b"=" * (-len(text) % 4))
    except binascii.Error:
        raise SignatureError("malformed", "the token is not a JWT") from None


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_DIGIT_VALUE = {
    character: value
    for value, character in enumerate(string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_")
}
_TO_BASE64 = bytes.maketrans(b"-_", b"+/")


def _canonical_base64url(text: str) -> bool:
    """Whether `text` is base64url as a JWT writes it: its alphabet only, no padding, no length that no bytes
    make, and the bits left over in its last character all zero."""
    if not _BASE64URL.fullmatch(text):
        return False
    spare = len(text) % 4
    if spare == 1:
        return False
    # 2 characters left over carry 1 byte (4 unused bits), 3 carry 2 bytes (2 unused bits).
    return spare == 0 or _DIGIT_VALUE[text[-1]] % (16 if spare == 2 else 4) == 0


def _json_segment(text: str, what: str):
    try:
        return json.loads(_segment(text))
    except (ValueError, RecursionError):
        raise SignatureError("malformed", f"the token's {what} is not JSON") from None


def _verified_hs256(token: str, secrets: Sequence[str]) -> dict:
    """The claims of an HS256 JWT whose signature matches one of `secrets`; raise SignatureError."""
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureError("malformed", "the token is not a JWT")
    algorithm = _header_algorithm(parts[0])
    if algorithm != ALGORITHM:
        raise SignatureError("wrong_algorithm", f"the token's algorithm is {algorithm!r}, not {ALGORITHM}")
    signature = _segment(parts[2])
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
    for secret in secrets:
        mac = _keyed(secret).copy()
        mac.update(signing_input)
        if hmac.compare_digest(mac.digest(), signature):
            break
    else:
        raise SignatureError("bad_signature", "the signature matches no VONAGE_SIGNATURE_SECRET")
    claims = _json_segment(parts[1], "claims")
    if not isinstance(claims, dict):
        raise SignatureError("malformed", "the token's claims are not a JSON object")
    return claims


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 with `secret`'s key already mixed in: each check copies it instead of keying afresh."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


@functools.lru_cache(maxsize=64)
def _header_algorithm(segment: str) -> str | None:
    """The `alg` of a JWT header segment (raises SignatureError for a header this check refuses).

    Cached: Vonage sends the same header on every webhook; only headers that pass are kept.
    """
    header = _json_segment(segment, "header")
    if not isinstance(header, dict):
        raise SignatureError("malformed", "the token's header is not a JSON object")
    if "crit" in header or "b64" in header:
        raise SignatureError("malformed", "the token's header asks for extensions (crit, b64) that Vonage never uses")
    if not isinstance(header.get("kid", ""), str):
        raise SignatureError("malformed", "the token's header has a kid that is not text")
    return header.get("alg")


def sign_webhook(
    secret: str,
    method: str,
    body: bytes,
    query_pairs: Sequence[tuple[str, str]],
    now: float,
    api_key: str = "abcd1234",
    application_id: str | None = None,
) -> str:
    """An `Authorization` header value signed as Vonage signs webhooks (for the simulator and tests)."""
    claims = {
        "iat": int(now),
        "jti": str(uuid.uuid4()),
        "iss": ISSUER,
        "payload_hash": payload_hash(method, body, query_pairs),
        "api_key": api_key,
    }
    if application_id:
        claims["application_id"] = application_id
    import jwt  # PyJWT, and the cryptography package behind it: only where requests are made, never in a worker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return "Bearer " + jwt.encode(claims, secret, algorithm=ALGORITHM)
