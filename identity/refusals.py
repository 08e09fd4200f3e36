"""Why POST /client/token refused a login: one code per reason (counted in /metrics), and the error that carries it.

No JWT library here: the app counts these codes from start-up whether or not CLIENT_AUTH is set.
"""

from __future__ import annotations

import hmac

# code -> HTTP status. 401: the caller did not prove who they are; 400: they did, but the name will not do;
# 503: the issuer's keys cannot be had just now.
REFUSALS = {
    "no_credentials": 401,
    "wrong_key": 401,
    "malformed": 401,
    "algorithm": 401,
    "unknown_key": 401,
    "bad_signature": 401,
    "expired": 401,
    "not_yet_valid": 401,
    "wrong_issuer": 401,
    "wrong_audience": 401,
    "missing_claim": 401,
    "bad_request": 400,
    "bad_user": 400,
    "issuer_unavailable": 503,
    "users_unavailable": 503,
}
REFUSAL_CODES = tuple(REFUSALS)


class LoginRefused(Exception):
    """A login refused: `code` is one of REFUSALS, `message` says what was wrong in words for the caller."""

    def __init__(self, code: str, message: str, retry_after: int | None = None):
        assert code in REFUSALS, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = REFUSALS[code]
        self.retry_after = retry_after


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when there is no such header."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(given: str, expected: str) -> bool:
    """Whether the caller's key is CLIENT_AUTH_KEY, compared in constant time (of the expected key's length)."""
    return hmac.compare_digest(given.encode(), expected.encode())
