"""Signed webhooks: the pure checks, and every route refusing what is not signed by Vonage."""

import base64
import hashlib
import json
import logging
import time
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from vonage_jwt import verify_signature

from conftest import SEED_EVENTS, built_app, load_fixture
from edge.signatures import SignatureError, payload_for_hash, sign_webhook, verify_webhook
from vonage_helper.ncco_models import parse_ncco

SECRET = "sig-secret-0123456789abcdef0123456789abcdef"
OLD_SECRET = "old-secret-0123456789abcdef0123456789abcdef"
NOW = 1_790_000_000.0
ANSWER_QUERY = [("to", "447700900000"), ("from_user", "Alice"), ("uuid", "2da93da3"), ("conversation_uuid", "CON-1")]


def bearer_claims(header: str) -> dict:
    return jwt.decode(header.split(" ", 1)[1], options={"verify_signature": False})


def forge(claims: dict, secret: str = SECRET, algorithm: str = "HS256", headers: dict | None = None) -> str:
    return "Bearer " + jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def good_claims(payload: bytes, now: float = NOW) -> dict:
    return {
        "iat": int(now),
        "jti": "j1",
        "iss": "Vonage",
        "api_key": "abcd1234",
        "payload_hash": hashlib.sha256(payload).hexdigest(),
    }


# --- the signer matches Vonage's scheme -------------------------------------------------------------


def test_signer_produces_tokens_vonages_own_helper_verifies():
    header = sign_webhook(SECRET, "POST", b'{"status":"started"}', [], NOW)
    assert verify_signature(header.split(" ", 1)[1], SECRET) is True
    assert verify_signature(header.split(" ", 1)[1], OLD_SECRET) is False


def test_signer_claims_are_vonages():
    claims = bearer_claims(sign_webhook(SECRET, "POST", b"{}", [], NOW, application_id="app-1"))
    assert claims["iss"] == "Vonage" and claims["iat"] == int(NOW) and claims["application_id"] == "app-1"
    assert claims["payload_hash"] == hashlib.sha256(b"{}").hexdigest()
    assert claims["jti"] and claims["api_key"]


def test_get_payload_is_query_as_compact_json_in_original_order_with_non_ascii_as_is():
    pairs = [("to", "447700900000"), ("from_user", "Zoë"), ("a", "1 2")]
    assert payload_for_hash("GET", b"", pairs) == '{"to":"447700900000","from_user":"Zoë","a":"1 2"}'.encode()


def test_post_payload_is_the_raw_body():
    assert payload_for_hash("POST", b'{ "a" : 1 }', [("x", "y")]) == b'{ "a" : 1 }'


# --- the pure check --------------------------------------------------------------------------------


def verify(header, method="POST", body=b"{}", query=(), secrets=(SECRET,), now=NOW, max_age=300):
    return verify_webhook(header, method, body, list(query), list(secrets), now, max_age)


def test_valid_post_signature_returns_claims():
    claims = verify(sign_webhook(SECRET, "POST", b"{}", [], NOW))
    assert claims["iss"] == "Vonage"


def test_valid_get_signature_verifies():
    verify(sign_webhook(SECRET, "GET", b"", ANSWER_QUERY, NOW), method="GET", body=b"", query=ANSWER_QUERY)


def test_any_of_several_secrets_verifies_during_rotation():
    verify(sign_webhook(OLD_SECRET, "POST", b"{}", [], NOW), secrets=(SECRET, OLD_SECRET))


def test_missing_header_is_503():
    with pytest.raises(SignatureError) as refusal:
        verify(None)
    assert refusal.value.status == 503


def refused(header, **kwargs) -> str:
    with pytest.raises(SignatureError) as refusal:
        verify(header, **kwargs)
    assert refusal.value.status == 401
    return refusal.value.reason


def test_iat_within_window_either_way_verifies():
    verify(sign_webhook(SECRET, "POST", b"{}", [], NOW - 299))
    verify(sign_webhook(SECRET, "POST", b"{}", [], NOW + 299))


def test_expired_and_future_iat_are_refused():
    assert "outside" in refused(sign_webhook(SECRET, "POST", b"{}", [], NOW - 301))
    assert "outside" in refused(sign_webhook(SECRET, "POST", b"{}", [], NOW + 301))


def test_max_age_is_configurable():
    verify(sign_webhook(SECRET, "POST", b"{}", [], NOW - 3000), max_age=3600)


def test_wrong_issuer_is_refused():
    assert "issuer" in refused(forge({**good_claims(b"{}"), "iss": "Mallory"}))


def test_missing_payload_hash_is_refused():
    claims = good_claims(b"{}")
    del claims["payload_hash"]
    assert "payload_hash" in refused(forge(claims))


def test_missing_iat_is_refused():
    claims = good_claims(b"{}")
    del claims["iat"]
    assert "iat" in refused(forge(claims))


def test_alg_none_is_refused():
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(good_claims(b"{}")).encode()).rstrip(b"=").decode()
    assert "'none'" in refused(f"Bearer {header}.{body}.")


def test_rs256_token_is_refused():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert "RS256" in refused(forge(good_claims(b"{}"), pem, "RS256"))


def test_hs512_token_is_refused():
    assert "HS512" in refused(forge(good_claims(b"{}"), SECRET * 2, algorithm="HS512"))


@pytest.mark.parametrize("header", ["Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "token"])
def test_header_without_a_bearer_token_is_refused(header):
    refused(header)


def test_garbage_token_is_refused():
    assert "not a JWT" in refused("Bearer not.a.jwt")


def test_oversized_token_is_refused():
    assert "over" in refused("Bearer " + "a" * 5000)


def test_wrong_secret_is_refused():
    assert "no VONAGE_SIGNATURE_SECRET" in refused(
        sign_webhook("another-secret-entirely-0123456789", "POST", b"{}", [], NOW)
    )


# --- every route, over HTTP -------------------------------------------------------------------------


@pytest.fixture
def settings_env():
    return {"VONAGE_SIGNATURE_SECRET": f"{SECRET},{OLD_SECRET}"}


@pytest.fixture
def stored(call_log, client, caplog):
    """What the server processed, in order: events (logged as VOICE EVENT) and answer decisions logged,
    and the conversations the call log holds (events and answer decisions stored)."""
    caplog.set_level(logging.INFO, logger="voice")

    def processed():
        call_log.client.flush()
        logged = [
            record.payload if hasattr(record, "payload") else record.getMessage()
            for record in caplog.records
            if hasattr(record, "event") or hasattr(record, "connected")
        ]
        return (
            logged
            + [call["conversation_uuid"] for call in call_log.reader.list_calls(limit=200)[0]]
            + (["an event stored"] * call_log.reader.count_events())
        )

    return processed


def signed_get(client, path, pairs, secret=SECRET, now=None, sign_pairs=None):
    header = sign_webhook(secret, "GET", b"", sign_pairs or pairs, now or time.time())
    return client.get(f"{path}?{urlencode(pairs)}", headers={"Authorization": header})


def signed_post(client, path, body: bytes, secret=SECRET, signed_body=None, content_type="application/json"):
    header = sign_webhook(secret, "POST", signed_body if signed_body is not None else body, [], time.time())
    return client.post(path, data=body, content_type=content_type, headers={"Authorization": header})


def test_signed_get_answer_connects(client):
    response = signed_get(client, "/voice/answer", ANSWER_QUERY)
    assert response.status_code == 200
    assert parse_ncco(response.get_json())[1].endpoint[0].number == "447700900000"


def test_signed_get_answer_with_non_ascii_value_connects(client):
    response = signed_get(client, "/voice/answer", ANSWER_QUERY + [("note", "Zoë 東京")])
    assert response.status_code == 200
    assert parse_ncco(response.get_json())[1].endpoint[0].number == "447700900000"


def test_signed_post_answer_connects(client):
    response = signed_post(client, "/voice/answer", json.dumps({"to": "447700900000", "from_user": "Zoë"}).encode())
    assert response.status_code == 200
    assert parse_ncco(response.get_json())[1].endpoint[0].number == "447700900000"


def test_signed_post_fallback_connects(client):
    response = signed_post(client, "/voice/fallback", b'{"to": "447700900000", "reason": "timeout"}')
    assert parse_ncco(response.get_json())[1].endpoint[0].number == "447700900000"


def test_signed_post_event_is_processed_and_marked_verified(client, stored, caplog):
    body = json.dumps(load_fixture(SEED_EVENTS[0])).encode()
    assert signed_post(client, "/voice/event", body).status_code == 204
    assert stored() == [
        load_fixture(SEED_EVENTS[0]),
        load_fixture(SEED_EVENTS[0])["conversation_uuid"],
        "an event stored",
    ]
    assert [record.verified for record in caplog.records if getattr(record, "event", None)] == [True]


def test_signed_get_event_is_processed(client, stored):
    assert signed_get(client, "/voice/event", [("status", "ringing"), ("uuid", "u1")]).status_code == 204
    assert stored() == [{"status": "ringing", "uuid": "u1"}, "an event stored"]


def test_event_signed_with_old_secret_during_rotation_is_processed(client, stored):
    assert signed_post(client, "/voice/event", b'{"status": "started"}', secret=OLD_SECRET).status_code == 204
    assert stored() == [{"status": "started"}, "an event stored"]


def assert_refused(response, status, stored):
    assert response.status_code == status
    assert "signature check failed" in response.get_json()["error"]
    assert stored() == []


def test_unsigned_event_gets_503_with_retry_after_and_is_not_processed(client, stored):
    response = client.post("/voice/event", json={"status": "started"})
    assert_refused(response, 503, stored)
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize("path", ["/voice/answer", "/voice/fallback"])
def test_unsigned_answer_gets_503_not_an_ncco(client, path, stored):
    assert_refused(client.get(f"{path}?to=447700900000"), 503, stored)


@pytest.mark.parametrize("header", ["Bearer", "Bearer garbage", "Basic abc"])
def test_bad_authorization_header_gets_401(client, header, stored):
    response = client.post("/voice/event", json={"status": "started"}, headers={"Authorization": header})
    assert_refused(response, 401, stored)


def test_wrong_secret_gets_401(client, stored):
    assert_refused(
        signed_post(client, "/voice/event", b'{"status": "started"}', secret="nope-0123456789abcdef0123456789"),
        401,
        stored,
    )


def test_tampered_body_gets_401(client, stored):
    response = signed_post(
        client,
        "/voice/event",
        b'{"status": "completed", "price": "9"}',
        signed_body=b'{"status": "completed", "price": "0"}',
    )
    assert_refused(response, 401, stored)


def test_body_hash_of_another_request_gets_401(client, stored):
    header = sign_webhook(SECRET, "POST", b'{"status": "started", "uuid": "other"}', [], time.time())
    response = client.post(
        "/voice/event",
        data=b'{"status": "started", "uuid": "mine"}',
        content_type="application/json",
        headers={"Authorization": header},
    )
    assert_refused(response, 401, stored)


def test_tampered_query_gets_401(client, stored):
    signed = [("to", "447700900000")]
    response = signed_get(client, "/voice/answer", [("to", "449098790000")], sign_pairs=signed)
    assert_refused(response, 401, stored)


def test_reordered_query_gets_401(client, stored):
    pairs = [("to", "447700900000"), ("from_user", "Alice")]
    response = signed_get(client, "/voice/answer", list(reversed(pairs)), sign_pairs=pairs)
    assert_refused(response, 401, stored)


def test_extra_query_parameter_gets_401(client, stored):
    pairs = [("status", "started"), ("uuid", "u1")]
    response = signed_get(client, "/voice/event", pairs + [("price", "0")], sign_pairs=pairs)
    assert_refused(response, 401, stored)


def test_alg_none_over_http_gets_401(client, stored):
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    payload = (
        base64.urlsafe_b64encode(json.dumps(good_claims(b'{"status":"x"}', time.time())).encode()).rstrip(b"=").decode()
    )
    response = client.post(
        "/voice/event",
        data=b'{"status":"x"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {header}.{payload}."},
    )
    assert_refused(response, 401, stored)


def test_expired_signature_over_http_gets_401(client, stored):
    header = sign_webhook(SECRET, "POST", b'{"status":"x"}', [], time.time() - 3600)
    response = client.post(
        "/voice/event", data=b'{"status":"x"}', content_type="application/json", headers={"Authorization": header}
    )
    assert_refused(response, 401, stored)


def test_refusal_logs_one_line_with_reason_and_path_but_never_the_token_or_secret(client, caplog):
    caplog.set_level(logging.INFO, logger="voice")
    header = sign_webhook("wrong-secret-0123456789abcdef0123", "POST", b"{}", [], time.time())
    client.post("/voice/event", data=b"{}", content_type="application/json", headers={"Authorization": header})
    (line,) = [record.getMessage() for record in caplog.records]
    assert "/voice/event" in line and "no VONAGE_SIGNATURE_SECRET" in line
    assert header.split(" ")[1] not in caplog.text and SECRET not in caplog.text


def test_health_is_not_signed_and_reports_signatures_on(client):
    body = client.get("/health").get_json()
    assert body["parts"]["signatures"] == {"status": "on", "secrets": 2, "max_age": 300}


def test_proxy_host_does_not_matter(client):
    header = sign_webhook(SECRET, "GET", b"", ANSWER_QUERY, time.time())
    response = client.get(
        f"/voice/answer?{urlencode(ANSWER_QUERY)}",
        headers={"Authorization": header, "Host": "abc123.ngrok.app", "X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 200


def test_without_secret_requests_are_accepted_as_unverified(caplog, database_url):
    caplog.set_level(logging.INFO, logger="voice")
    with built_app({"DATABASE_URL": database_url}) as app:
        assert app.test_client().post("/voice/event", json={"status": "started"}).status_code == 204
        assert app.test_client().get("/health").get_json()["parts"]["signatures"]["status"] == "off"
    assert [record.verified for record in caplog.records if getattr(record, "event", None)] == [False]


def test_expired_exp_claim_is_refused():
    assert "expired" in refused(forge({**good_claims(b"{}"), "exp": int(NOW) - 1}))


def test_not_yet_valid_nbf_claim_is_refused():
    assert "not valid yet" in refused(forge({**good_claims(b"{}"), "nbf": int(NOW) + 60}))


def test_signed_claims_that_are_not_an_object_are_refused():
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=")
    import hashlib as _hashlib
    import hmac as _hmac

    signature = base64.urlsafe_b64encode(
        _hmac.new(SECRET.encode(), header + b"." + body, _hashlib.sha256).digest()
    ).rstrip(b"=")
    assert "not a JSON object" in refused(f"Bearer {header.decode()}.{body.decode()}.{signature.decode()}")


@pytest.mark.parametrize(
    "claim, value",
    [
        ("iat", float("nan")),
        ("iat", float("inf")),
        ("iat", float("-inf")),
        ("iat", NOW + 0.5),
        ("iat", str(int(NOW))),
        ("iat", True),
        ("exp", float("nan")),
        ("exp", float("inf")),
        ("exp", "never"),
        ("nbf", float("nan")),
        ("exp", None),
    ],
)
def test_time_claims_must_be_whole_seconds(claim, value):
    """NaN compares false with everything: a NaN exp never expires, a NaN iat is never too old."""
    claims = {**good_claims(b"{}"), claim: value}
    assert f"{claim} is not a whole number of seconds" in refused(forge(claims))


@pytest.mark.parametrize("extension", [{"crit": ["exp"]}, {"b64": False, "crit": ["b64"]}, {"crit": []}])
def test_tokens_asking_for_jws_extensions_are_refused(extension):
    assert "extensions" in refused(forge(good_claims(b"{}"), headers=extension))


@pytest.mark.parametrize("path", ["/voice/answer", "/voice/fallback", "/voice/event"])
def test_an_unsigned_body_over_the_limit_gets_no_2xx_and_writes_nothing(client, path, stored):
    body = json.dumps({"to": "447700900000", "padding": "x" * (70 * 1024)}).encode()
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 503
    assert stored() == []


@pytest.mark.parametrize("path", ["/voice/answer", "/voice/fallback", "/voice/event"])
def test_a_signed_body_over_the_limit_gets_no_2xx_and_writes_nothing(client, path, stored):
    body = json.dumps({"to": "447700900000", "padding": "x" * (70 * 1024)}).encode()
    response = signed_post(client, path, body)
    assert response.status_code == 413
    assert "signature check failed" in response.get_json()["error"]
    assert stored() == []


@pytest.mark.parametrize("path", ["/voice/answer", "/voice/event"])
def test_a_body_cut_short_under_a_valid_token_gets_no_2xx_and_writes_nothing(client, path, stored):
    body = json.dumps({"to": "447700900000", "status": "started"}).encode()
    header = sign_webhook(SECRET, "POST", body, [], time.time())
    response = client.post(
        path,
        data=body,
        content_type="application/json",
        headers={"Authorization": header},
        environ_overrides={"CONTENT_LENGTH": str(len(body) + 10)},
    )
    assert response.status_code == 400
    assert stored() == []
