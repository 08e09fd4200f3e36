"""Checking an identity provider's ID token: an asymmetric signature by one of the issuer's keys, then the issuer,
the audience and the clock; the user is one claim of it. Every refusal says, in words, what was wrong."""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from identity.issuer_keys import IssuerKeys, KeysUnavailable, UnknownKey
from identity.refusals import LoginRefused

# Algorithm -> the key type it needs. Only public-key signatures: `none` proves nothing, and an HS* token would be
# checked with the issuer's *public* key as its secret, which anyone can fetch.
ALGORITHMS = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), "RSA"),
    **dict.fromkeys(("ES256", "ES384", "ES512"), "EC"),
    "EdDSA": "OKP",
}
# Clocks differ a little between the identity provider, the phone and this server.
LEEWAY_SECONDS = 60


@dataclass(frozen=True)
class Expected:
    """What an ID token must say: CLIENT_AUTH_ISSUER, CLIENT_AUTH_AUDIENCE, and which claim names the user."""

    issuer: str
    audience: str
    user_claim: str = "sub"


def id_token_user(token: str, keys: IssuerKeys, expected: Expected) -> str:
    """The user an ID token names, once it is checked; LoginRefused says why it is not good enough."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise LoginRefused(
            "malformed", "the bearer token is not a JWT (send the identity provider's ID token)"
        ) from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise LoginRefused(
            "algorithm",
            f"the ID token is signed with {_shown(algorithm)}; only public-key algorithms (RS256, ES256, ...) are "
            "accepted",
        )
    key_id = header.get("kid")
    try:
        key = keys.key_for(key_id if isinstance(key_id, str) else None)
    except UnknownKey:
        raise LoginRefused(
            "unknown_key", f"the ID token's key id {_shown(key_id)} is not one of the issuer's keys ({expected.issuer})"
        ) from None
    except KeysUnavailable as unavailable:
        raise LoginRefused(
            "issuer_unavailable",
            f"the identity provider's keys cannot be fetched just now ({unavailable.problem}); try again shortly",
            unavailable.retry_after,
        ) from None
    if key.key_type != ALGORITHMS[algorithm]:
        raise LoginRefused(
            "algorithm", f"the ID token says {algorithm}, but its key {_shown(key_id)} is an {key.key_type} key"
        )
    claims = _checked_claims(token, key.key, algorithm, expected)
    user = claims.get(expected.user_claim)
    if not isinstance(user, str) or not user:
        raise LoginRefused(
            "missing_claim",
            f"the ID token has no {expected.user_claim!r} claim (CLIENT_AUTH_USER_CLAIM) naming the user",
        )
    return user


def _shown(value: object) -> str:
    """A header's value as a refusal quotes it: whatever the token held, at most 60 characters of it."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _checked_claims(token: str, key, algorithm: str, expected: Expected) -> dict:
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=expected.audience,
            issuer=expected.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise LoginRefused("expired", "the ID token has expired; get a fresh one from the identity provider") from None
    except jwt.ImmatureSignatureError:
        raise LoginRefused("not_yet_valid", "the ID token is not valid yet (its iat or nbf is in the future)") from None
    except jwt.InvalidAudienceError:
        raise LoginRefused(
            "wrong_audience", f"the ID token is for another audience, not {expected.audience!r} (CLIENT_AUTH_AUDIENCE)"
        ) from None
    except jwt.InvalidIssuerError:
        raise LoginRefused(
            "wrong_issuer", f"the ID token was issued by another issuer, not {expected.issuer!r} (CLIENT_AUTH_ISSUER)"
        ) from None
    except jwt.MissingRequiredClaimError as missing:
        raise LoginRefused("missing_claim", f"the ID token has no {missing.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise LoginRefused("bad_signature", "the ID token's signature does not match the issuer's key") from None
    except jwt.InvalidTokenError as error:
        raise LoginRefused("malformed", f"the ID token cannot be read ({error})") from None
