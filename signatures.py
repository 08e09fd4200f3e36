"""Signed webhooks: check Vonage's `Authorization: Bearer <JWT>` fully (HS256, payload hash, freshness, issuer)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
import warnings
from collections.abc import Sequence

import jwt

ALGORITHM = "HS256"
ISSUER = "Vonage"
MAX_TOKEN_LENGTH = 4096


class SignatureError(Exception):
    """A webhook that must not be processed. `status`: 401 for a bad signature, 503 for none at all."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
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
    return json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
    if authorization is None:
        raise SignatureError(503, "no Authorization header (Vonage retries an unsigned callback after a 5xx)")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise SignatureError(401, "the Authorization header is not 'Bearer <JWT>'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise SignatureError(401, f"the token is over {MAX_TOKEN_LENGTH} characters")
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError:
        raise SignatureError(401, "the token is not a JWT") from None
    if algorithm != ALGORITHM:
        raise SignatureError(401, f"the token's algorithm is {algorithm!r}, not {ALGORITHM}")
    claims = _decode_with_any(token, secrets)
    expected_hash = payload_hash(method, body, query_pairs)
    claimed_hash = claims.get("payload_hash")
    if not isinstance(claimed_hash, str):
        raise SignatureError(401, "the token has no payload_hash")
    if not hmac.compare_digest(claimed_hash.lower().encode(), expected_hash.encode()):
        raise SignatureError(401, "payload_hash does not match the request's payload")
    issued_at = claims.get("iat")
    if not isinstance(issued_at, (int, float)) or isinstance(issued_at, bool):
        raise SignatureError(401, "the token has no iat (issued-at time)")
    if abs(now - issued_at) > max_age:
        raise SignatureError(401, f"the token was issued {int(now - issued_at)} s from now, outside ±{max_age} s")
    if "iss" in claims and claims["iss"] != ISSUER:
        raise SignatureError(401, f"the token's issuer is {claims['iss']!r}, not {ISSUER!r}")
    return claims


def _decode_with_any(token: str, secrets: Sequence[str]) -> dict:
    for secret in secrets:
        try:
            with warnings.catch_warnings():
                # Vonage chooses the secret's length; PyJWT's advice on short HMAC keys is noise here.
                warnings.simplefilter("ignore")
                return jwt.decode(
                    token,
                    secret,
                    algorithms=[ALGORITHM],
                    options={"verify_iat": False, "verify_exp": True, "verify_nbf": True},
                )
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as error:
            raise SignatureError(401, f"the token is invalid ({type(error).__name__})") from None
    raise SignatureError(401, "the signature matches no VONAGE_SIGNATURE_SECRET")


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return "Bearer " + jwt.encode(claims, secret, algorithm=ALGORITHM)
