"""POST /client/token: a Client SDK login token for a user this server knows to be who they say.

Who the user is comes from CLIENT_AUTH: `oidc`, an identity provider's ID token (Authorization: Bearer); `key`,
the app's own backend, which sends CLIENT_AUTH_KEY and names the user in the body. Unset, the route answers 404.
Never a token for a name the caller merely chose. The route reads top to bottom: authenticate, check the name,
make sure the user exists (CLIENT_CREATE_USERS), sign, log, count, answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, Flask, current_app, jsonify, request

from calllog.schema import Database
from config import Settings, valid_user_name
from edge.errors import error_json_response
from edge.login_users import LoginUsers
from identity.refusals import LoginRefused, bearer_token, key_matches
from runtime.metrics import Metrics

PATH = "/client/token"
EXTENSION = "client_login"
OFF_MESSAGE = (
    "POST /client/token is off: set CLIENT_AUTH=oidc (the app sends its identity provider's ID token) or "
    "CLIENT_AUTH=key (your backend asks, with CLIENT_AUTH_KEY); see docs/client-sdk.md"
)

bp = Blueprint("client_token", __name__)


@dataclass(frozen=True)
class ClientLogin:
    """What the route works with, built once by init_app: how a caller proves who the user is, and the signer."""

    settings: Settings
    authenticate: Callable[[], str]  # the user the request proves, or LoginRefused
    sign: Callable[[str], tuple[str, str, str]]  # user -> (token, its jti, its expiry in ISO 8601)
    users: LoginUsers
    log: logging.Logger
    metrics: Metrics


def init_app(app: Flask, settings: Settings, log: logging.Logger, metrics: Metrics, database: Database) -> None:
    """Register the route; with CLIENT_AUTH set, load what verifying and signing need now, not at a first request."""
    app.register_blueprint(bp)
    if settings.client_auth is None:
        return
    from identity.user_tokens import UserTokenSigner, expires_at, user_token_claims

    signer = UserTokenSigner(settings.private_key)

    def sign(user: str) -> tuple[str, str, str]:
        claims = user_token_claims(settings.application_id, user, datetime.now(UTC), settings.client_token_ttl)
        return signer.sign(claims), claims["jti"], expires_at(claims)

    authenticate = _oidc_check(settings) if settings.client_auth == "oidc" else _key_check(settings)
    users = LoginUsers(database, log, settings.client_create_users, settings)
    app.extensions[EXTENSION] = ClientLogin(settings, authenticate, sign, users, log, metrics)


def _oidc_check(settings: Settings) -> Callable[[], str]:
    from identity.id_tokens import Expected, id_token_user
    from identity.issuer_keys import IssuerJwks, IssuerKeys

    keys = IssuerKeys(IssuerJwks(settings.client_auth_issuer, settings.client_auth_jwks_url).fetch)
    expected = Expected(settings.client_auth_issuer, settings.client_auth_audience, settings.client_auth_user_claim)

    def authenticate() -> str:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise LoginRefused(
                "no_credentials", "send the identity provider's ID token as 'Authorization: Bearer <ID token>'"
            )
        return id_token_user(token, keys, expected)

    return authenticate


def _key_check(settings: Settings) -> Callable[[], str]:
    def authenticate() -> str:
        given = bearer_token(request.headers.get("Authorization"))
        if given is None:
            raise LoginRefused("no_credentials", "send CLIENT_AUTH_KEY as 'Authorization: Bearer <key>'")
        if not key_matches(given, settings.client_auth_key):
            raise LoginRefused("wrong_key", "the bearer key is not CLIENT_AUTH_KEY")
        body = request.get_json(silent=True)
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str):
            raise LoginRefused("bad_request", 'send the user as JSON: {"user": "Alice"}')
        return user

    return authenticate


@bp.post(PATH)
def client_token():
    login: ClientLogin | None = current_app.extensions.get(EXTENSION)
    if login is None:
        return error_json_response(404, OFF_MESSAGE)
    try:
        user = login.authenticate()
        _check_name(user)
        login.users.ensure(user)
    except LoginRefused as refused:
        return _refuse(login, refused)
    token, jti, expiry = login.sign(user)
    login.log.info(
        "client token issued for %s (%s), expires %s",
        user,
        login.settings.client_auth,
        expiry,
        extra={"user": user, "auth": login.settings.client_auth, "expires_at": expiry, "jti": jti},
    )
    login.metrics.client_tokens_issued[login.settings.client_auth].inc()
    login.users.issued(user)
    response = jsonify(token=token, user=user, expires_at=expiry)
    response.headers["Cache-Control"] = "no-store"
    return response


def _check_name(user: str) -> None:
    try:
        valid_user_name(user)
    except ValueError as problem:
        raise LoginRefused("bad_user", f"{problem}: Vonage would not take {user[:100]!r} as a user's name") from None


def _refuse(login: ClientLogin, refused: LoginRefused):
    login.log.warning(
        "client token refused (%s, %s): %s",
        refused.status,
        refused.code,
        refused.message,
        extra={"path": PATH, "status": refused.status, "reason": refused.code, "client": request.remote_addr},
    )
    login.metrics.client_token_refusals[refused.code].inc()
    headers = [("Cache-Control", "no-store")]
    if refused.retry_after is not None:
        headers.append(("Retry-After", str(refused.retry_after)))
    return error_json_response(refused.status, refused.message, headers)
