"""The login-token logic without HTTP: the settings, the login token's claims, the issuer key cache's rules on a
clock the test moves, and the constant-time key check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config import CLIENT_SDK_PATHS, ConfigError, settings_from
from identity.issuer_keys import FetchFailed, IssuerJwks, IssuerKeys, KeysUnavailable, UnknownKey, usable_keys
from identity.refusals import bearer_token, key_matches
from identity.user_tokens import expires_at, user_token_claims
from support.oidc_issuer import JWKS_PATH, OidcIssuer

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
SIGNING = {"VONAGE_APPLICATION_ID": APPLICATION_ID, "VONAGE_PRIVATE_KEY": "./private.key"}
OIDC = {"CLIENT_AUTH": "oidc", "CLIENT_AUTH_ISSUER": "https://issuer.example", "CLIENT_AUTH_AUDIENCE": "app", **SIGNING}


# --- settings ---


def test_client_token_ttl_defaults_to_an_hour_and_reads_units():
    assert settings_from({}).client_token_ttl == timedelta(hours=1)
    assert settings_from({"CLIENT_TOKEN_TTL": "15m"}).client_token_ttl == timedelta(minutes=15)
    assert settings_from({"CLIENT_TOKEN_TTL": "24h"}).client_token_ttl == timedelta(hours=24)
    assert settings_from({"CLIENT_TOKEN_TTL": "900"}).client_token_ttl == timedelta(seconds=900)


@pytest.mark.parametrize("value", ["25h", "30s", "1d", "soon", "-1h"])
def test_a_client_token_ttl_outside_a_minute_to_a_day_stops_start_up_in_one_line(value):
    with pytest.raises(ConfigError) as refused:
        settings_from({"CLIENT_TOKEN_TTL": value})
    message = str(refused.value)
    assert message.startswith("CLIENT_TOKEN_TTL: ") and "for example CLIENT_TOKEN_TTL=1h" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"CLIENT_AUTH": "password"}, "CLIENT_AUTH: 'password' is not one of oidc, key"),
        ({**OIDC, "CLIENT_AUTH_ISSUER": ""}, "CLIENT_AUTH=oidc needs CLIENT_AUTH_ISSUER"),
        ({**OIDC, "CLIENT_AUTH_AUDIENCE": ""}, "CLIENT_AUTH=oidc needs CLIENT_AUTH_AUDIENCE"),
        ({**OIDC, "CLIENT_AUTH_ISSUER": "http://issuer.example"}, "plain http"),
        ({**OIDC, "VONAGE_PRIVATE_KEY": ""}, "needs VONAGE_PRIVATE_KEY"),
        ({**OIDC, "VONAGE_APPLICATION_ID": ""}, "needs VONAGE_APPLICATION_ID"),
        ({"CLIENT_AUTH": "key", **SIGNING}, "CLIENT_AUTH=key needs CLIENT_AUTH_KEY"),
        ({"CLIENT_AUTH": "key", "CLIENT_AUTH_KEY": "short", **SIGNING}, "at least 32 characters"),
        ({"CLIENT_CREATE_USERS": "on"}, "CLIENT_AUTH is unset"),
        ({"CLIENT_CREATE_USERS": "maybe"}, "not on or off"),
    ],
)
def test_client_auth_without_what_it_needs_stops_start_up_in_one_line(settings, says):
    with pytest.raises(ConfigError) as refused:
        settings_from(settings)
    assert says in str(refused.value) and "for example" in str(refused.value)


def test_a_local_issuer_may_be_plain_http_and_the_key_is_a_secret():
    settings = settings_from({**OIDC, "CLIENT_AUTH_ISSUER": "http://127.0.0.1:8080/realms/app"})
    assert settings.client_auth_issuer == "http://127.0.0.1:8080/realms/app"
    keyed = settings_from({"CLIENT_AUTH": "key", "CLIENT_AUTH_KEY": "k" * 40, **SIGNING})
    assert "k" * 40 not in repr(keyed) and keyed.described()["client_auth_key"] == "(set)"


# --- the login token's claims ---


def test_the_claims_carry_the_user_the_application_and_an_expiry_ttl_from_now():
    issued = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    claims = user_token_claims(APPLICATION_ID, "Alice", issued, timedelta(minutes=30))
    assert claims["sub"] == "Alice" and claims["application_id"] == APPLICATION_ID
    assert claims["exp"] - claims["iat"] == 1800
    assert expires_at(claims) == "2026-12-07T12:30:00Z"
    assert set(claims["acl"]["paths"]) == set(CLIENT_SDK_PATHS)


def test_no_path_that_controls_calls_or_messages_is_granted():
    assert not {"/*/calls/**", "/*/messages/**"} & set(CLIENT_SDK_PATHS)


# --- the key cache ---


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """The issuer's JWKS documents, or a failure, as a fetch returns them; counts the fetches."""

    def __init__(self, issuer: OidcIssuer):
        self.issuer = issuer
        self.down = False
        self.fetches = 0

    def __call__(self) -> list[dict]:
        from identity.issuer_keys import FetchFailed

        self.fetches += 1
        if self.down:
            raise FetchFailed("cannot reach the issuer")
        return self.issuer.jwks()["keys"]


@pytest.fixture
def cache(issuer):
    clock, source = Clock(), Source(issuer)
    return IssuerKeys(source, clock), clock, source


def test_keys_are_fetched_once_and_then_served_from_the_cache(cache, issuer):
    keys, _, source = cache
    for _ in range(3):
        assert keys.key_for(issuer.key_id("RS256")).key_type == "RSA"
        assert keys.key_for(issuer.key_id("ES256")).key_type == "EC"
    assert source.fetches == 1


def test_an_unknown_key_id_is_fetched_for_at_most_once_a_minute(cache, issuer):
    keys, clock, source = cache
    keys.key_for(issuer.key_id())
    for _ in range(3):
        with pytest.raises(UnknownKey):
            keys.key_for("made-up")
    assert source.fetches == 2
    clock.now += 59
    with pytest.raises(UnknownKey):
        keys.key_for("made-up")
    assert source.fetches == 2
    clock.now += 1
    new_key, _ = issuer.rotate()
    assert keys.key_for(new_key).key_id == new_key
    assert source.fetches == 3


def test_cached_keys_serve_while_the_issuer_is_down_even_once_they_are_old(cache, issuer):
    keys, clock, source = cache
    kid = issuer.key_id()
    keys.key_for(kid)
    source.down = True
    clock.now += 2 * 3600
    assert keys.key_for(kid).key_id == kid
    assert keys.key_for(kid).key_id == kid  # the failed refresh is not tried again at once
    assert source.fetches == 2


def test_with_nothing_cached_a_down_issuer_is_unavailable_and_retried_after_ten_seconds(cache, issuer):
    keys, clock, source = cache
    source.down = True
    with pytest.raises(KeysUnavailable) as first:
        keys.key_for(issuer.key_id())
    assert first.value.retry_after == 10
    clock.now += 4
    with pytest.raises(KeysUnavailable) as second:
        keys.key_for(issuer.key_id())
    assert second.value.retry_after == 6 and source.fetches == 1
    clock.now += 6
    source.down = False
    assert keys.key_for(issuer.key_id()) is not None and source.fetches == 2


def test_a_rotated_key_while_the_issuer_is_down_is_unavailable_not_unknown(cache, issuer):
    keys, clock, source = cache
    keys.key_for(issuer.key_id())
    source.down = True
    with pytest.raises(KeysUnavailable):
        keys.key_for("rotated-in-the-meantime")


def test_only_signing_keys_of_public_key_types_are_used(issuer):
    documents = issuer.jwks()["keys"]
    secret = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    encryption = {**documents[0], "kid": "enc", "use": "enc"}
    assert set(usable_keys([*documents, secret, encryption])) == {document["kid"] for document in documents}


# --- CLIENT_AUTH=key ---


def test_the_bearer_token_is_read_from_the_header_only_with_the_bearer_scheme():
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer ") is None and bearer_token(None) is None


def test_the_key_must_match_exactly():
    assert key_matches("k" * 40, "k" * 40)
    assert not key_matches("k" * 39, "k" * 40) and not key_matches("k" * 39 + "K", "k" * 40)


# --- fetching over HTTP from the real issuer ---


def test_the_keys_are_found_through_the_discovery_document(issuer):
    keys = IssuerJwks(issuer.url).fetch()
    assert {key["kid"] for key in keys} == set(issuer.keys)


def test_a_redirect_is_followed_to_an_address_an_issuer_may_have(issuer):
    issuer.jwks_redirect = f"{issuer.url}{JWKS_PATH}?moved"
    try:
        assert {key["kid"] for key in IssuerJwks(issuer.url).fetch()} == set(issuer.keys)
    finally:
        issuer.jwks_redirect = None


def test_a_redirect_to_plain_http_elsewhere_is_refused(issuer):
    issuer.jwks_redirect = "http://keys.example/jwks.json"
    try:
        with pytest.raises(FetchFailed, match="redirects elsewhere: .*plain http"):
            IssuerJwks(issuer.url).fetch()
    finally:
        issuer.jwks_redirect = None
