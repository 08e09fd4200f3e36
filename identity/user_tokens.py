"""The Client SDK login token: its claims (pure), and its RS256 signature with the application's private key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config import CLIENT_SDK_PATHS, ConfigError, private_key_refusal, private_key_source, private_key_text


def user_token_claims(application_id: str, user: str, issued: datetime, ttl: timedelta) -> dict:
    """The claims of `user`'s login token, issued at `issued` (UTC) and valid for `ttl`; a fresh jti each time."""
    issued_at = int(issued.timestamp())
    return {
        "application_id": application_id,
        "sub": user,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
        "jti": str(uuid.uuid4()),
        "acl": {"paths": {path: {} for path in CLIENT_SDK_PATHS}},
    }


def application_token_claims(application_id: str, issued: datetime, ttl: timedelta) -> dict:
    """The claims of the application's own token, for the Voice API (acting on calls): no user, no acl."""
    issued_at = int(issued.timestamp())
    return {
        "application_id": application_id,
        "iat": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
        "jti": str(uuid.uuid4()),
    }


def expires_at(claims: dict) -> str:
    """The token's expiry as the response gives it: ISO 8601 in UTC, to the second, with a Z."""
    return datetime.fromtimestamp(claims["exp"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UserTokenSigner:
    """Signs login tokens with the application's private key, loaded once (when the app is built)."""

    def __init__(self, private_key_setting: str):
        """`private_key_setting` is VONAGE_PRIVATE_KEY (a path or the PEM); ConfigError, one line, if it cannot sign."""
        try:
            pem = private_key_text(private_key_setting)
        except ValueError as problem:
            raise ConfigError(private_key_refusal(str(problem))) from None
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None
        if not isinstance(key, rsa.RSAPrivateKey):
            where = private_key_source(private_key_setting)
            raise ConfigError(private_key_refusal(f"{where} does not load as an RSA private key"))
        self._key = key

    def sign(self, claims: dict) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"typ": "JWT"})
