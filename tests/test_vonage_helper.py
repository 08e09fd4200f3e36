"""The Vonage client helper, through the real SDK with HTTP intercepted by `responses`."""

import base64
import json
import time

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config import settings_from
from conftest import built_app
from vonage_helper.calls import place_call
from vonage_helper.clients import (
    EXIT_AUTH,
    EXIT_NOT_FOUND,
    EXIT_OTHER,
    EXIT_RATE_LIMITED,
    EXIT_REFUSED,
    EXIT_SETTINGS,
    EXIT_VONAGE_DOWN,
    HelperError,
)
from vonage_helper.ncco_models import parse_ncco
from vonage_helper.tokens import CLIENT_SDK_ACL, client_token, parse_ttl
from vonage_helper.webhooks import point_webhooks

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
CALLS_URL = "https://api.nexmo.com/v1/calls"
APPLICATION_URL = f"https://api.nexmo.com/v2/applications/{APPLICATION_ID}"
CREATED = {
    "uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356",
    "status": "started",
    "direction": "outbound",
    "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
}


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp_path_factory.mktemp("keys") / "private.key"
    path.write_bytes(pem)
    return path, key.public_key()


@pytest.fixture
def settings_env(key_pair):
    return {
        "VONAGE_APPLICATION_ID": APPLICATION_ID,
        "VONAGE_PRIVATE_KEY": str(key_pair[0]),
        "PUBLIC_URL": "https://abc123.ngrok.app/",
        "VONAGE_API_KEY": "abcd1234",
        "VONAGE_API_SECRET": "s3cret-api",
    }


@pytest.fixture
def settings(settings_env):
    return settings_from(settings_env)


def bearer_claims(request, public_key):
    header = request.headers["Authorization"]
    scheme, token = (header.decode() if isinstance(header, bytes) else header).split(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    return jwt.decode(token, public_key, algorithms=["RS256"])


@responses.activate
def test_place_call_sends_the_exact_request_signed_by_the_application(settings, key_pair):
    responses.post(CALLS_URL, json=CREATED, status=201)
    placed = place_call(settings, "+44 7700 900000", say="Your order is ready.")
    (call,) = responses.calls
    assert json.loads(call.request.body) == {
        "to": [{"type": "phone", "number": "447700900000"}],
        "ncco": [{"action": "talk", "text": "Your order is ready.", "language": "en-US"}],
        "random_from_number": True,
        "event_url": ["https://abc123.ngrok.app/voice/event"],
    }
    claims = bearer_claims(call.request, key_pair[1])
    assert claims["application_id"] == APPLICATION_ID
    assert (placed.uuid, placed.conversation_uuid, placed.to) == (
        CREATED["uuid"],
        CREATED["conversation_uuid"],
        "447700900000",
    )


@responses.activate
@pytest.mark.parametrize("settings_env", [{"VONAGE_NUMBER": "447700900001"}], indirect=False)
def test_click_to_call_bridges_to_the_other_number_from_our_number(settings_env, key_pair):
    settings = settings_from(
        {**settings_env, "VONAGE_APPLICATION_ID": APPLICATION_ID, "VONAGE_PRIVATE_KEY": str(key_pair[0])}
    )
    responses.post(CALLS_URL, json=CREATED, status=201)
    place_call(settings, "447700900000", connect="+44 7700 900123")
    body = json.loads(responses.calls[0].request.body)
    assert body["from"] == {"type": "phone", "number": "447700900001"}
    assert "event_url" not in body
    talk, connect = parse_ncco(body["ncco"])
    assert connect.endpoint[0].number == "447700900123" and connect.from_ == "447700900001"


@responses.activate
@pytest.mark.parametrize("to, connect", [("+44 909 879 0000", None), ("447700900000", "+44 909 879 0000")])
def test_a_refused_number_never_reaches_the_api(settings, to, connect):
    with pytest.raises(HelperError, match="PREMIUM_RATE") as error:
        place_call(settings, to, connect=connect)
    assert error.value.exit_code == EXIT_REFUSED
    assert len(responses.calls) == 0


@responses.activate
@pytest.mark.parametrize(
    "status, body, exit_code, message",
    [
        (401, {"title": "Unauthorized"}, EXIT_AUTH, "the application id does not match the private key"),
        (403, {"title": "Forbidden"}, EXIT_AUTH, "not allowed"),
        (404, {"title": "Not Found"}, EXIT_NOT_FOUND, "VONAGE_APPLICATION_ID"),
        (429, {"title": "Too Many Requests"}, EXIT_RATE_LIMITED, "rate limiting"),
        (503, {"title": "Service Unavailable"}, EXIT_VONAGE_DOWN, "server error (503)"),
        (
            400,
            {"title": "Bad Request", "invalid_parameters": [{"name": "to", "reason": "Invalid"}]},
            EXIT_OTHER,
            "to: Invalid",
        ),
    ],
)
def test_each_vonage_error_becomes_one_line_and_an_exit_code(settings, status, body, exit_code, message):
    responses.post(CALLS_URL, json=body, status=status)
    with pytest.raises(HelperError) as error:
        place_call(settings, "447700900000")
    assert error.value.exit_code == exit_code
    assert message in error.value.message
    assert "\n" not in error.value.message


@responses.activate
def test_network_failure_is_named(settings):
    responses.post(CALLS_URL, body=requests.ConnectionError("no route"))
    with pytest.raises(HelperError, match="cannot reach Vonage") as error:
        place_call(settings, "447700900000")
    assert error.value.exit_code == EXIT_VONAGE_DOWN


def test_missing_private_key_file_names_the_setting_and_where_to_get_it(settings_env, tmp_path):
    settings = settings_from({**settings_env, "VONAGE_PRIVATE_KEY": str(tmp_path / "private.key")})
    with pytest.raises(HelperError, match="VONAGE_PRIVATE_KEY: file not found at .*dashboard") as error:
        place_call(settings, "447700900000")
    assert error.value.exit_code == EXIT_SETTINGS


def test_missing_application_id_names_the_setting():
    with pytest.raises(HelperError, match="VONAGE_APPLICATION_ID is not set"):
        place_call(settings_from({}), "447700900000")


def test_private_key_given_as_pem_text_with_escaped_newlines_works(settings_env, key_pair):
    pem = key_pair[0].read_text().replace("\n", "\\n")
    token = client_token(settings_from({**settings_env, "VONAGE_PRIVATE_KEY": pem}), "Alice", 60)
    assert jwt.decode(token, key_pair[1], algorithms=["RS256"])["sub"] == "Alice"


def test_client_token_has_user_acl_and_expiry(settings, key_pair):
    token = client_token(settings, "Alice", 3600, now=time.time())
    claims = jwt.decode(token, key_pair[1], algorithms=["RS256"])
    assert claims["sub"] == "Alice" and claims["application_id"] == APPLICATION_ID
    assert claims["acl"] == CLIENT_SDK_ACL
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize("text, seconds", [("900", 900), ("15m", 900), ("1h", 3600), ("1d", 86400)])
def test_ttl_spellings(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0", "2d", "soon", "-5m"])
def test_bad_ttl_is_refused(text):
    with pytest.raises(HelperError):
        parse_ttl(text)


APPLICATION = {
    "id": APPLICATION_ID,
    "name": "My voice app",
    "capabilities": {
        "voice": {
            "webhooks": {
                "answer_url": {"address": "https://old.example/answer", "http_method": "GET"},
                "event_url": {"address": "https://old.example/event", "http_method": "POST"},
            }
        },
        "rtc": {"webhooks": {"event_url": {"address": "https://old.example/rtc", "http_method": "POST"}}},
    },
    "keys": {"public_key": "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"},
}


@responses.activate
def test_webhooks_point_the_application_here_and_keep_the_rest(settings):
    responses.get(APPLICATION_URL, json=APPLICATION)
    responses.put(APPLICATION_URL, json=APPLICATION)
    changes = point_webhooks(settings, "https://new.ngrok.app/")
    get, put = responses.calls
    assert put.request.headers["Authorization"] == "Basic " + base64.b64encode(b"abcd1234:s3cret-api").decode()
    sent = json.loads(put.request.body)
    assert sent["name"] == "My voice app"
    assert sent["capabilities"]["voice"]["webhooks"] == {
        "answer_url": {"address": "https://new.ngrok.app/voice/answer", "http_method": "GET"},
        "event_url": {"address": "https://new.ngrok.app/voice/event", "http_method": "POST"},
        "fallback_answer_url": {"address": "https://new.ngrok.app/voice/fallback", "http_method": "GET"},
    }
    assert sent["capabilities"]["rtc"] == APPLICATION["capabilities"]["rtc"]
    assert (
        changes[0] == "answer_url           GET https://old.example/answer  ->  GET https://new.ngrok.app/voice/answer"
    )
    assert changes[2].startswith("fallback_answer_url  (not set)  ->")


@responses.activate
def test_webhooks_with_wrong_account_credentials_say_so(settings):
    responses.get(APPLICATION_URL, json={"title": "Unauthorized"}, status=401)
    with pytest.raises(HelperError, match="VONAGE_API_KEY and VONAGE_API_SECRET do not match"):
        point_webhooks(settings, "https://new.ngrok.app")
    assert len(responses.calls) == 1


def test_webhooks_without_account_credentials_name_them(settings_env):
    settings = settings_from({key: value for key, value in settings_env.items() if key != "VONAGE_API_SECRET"})
    with pytest.raises(HelperError, match="VONAGE_API_SECRET is not set"):
        point_webhooks(settings, "https://new.ngrok.app")


@responses.activate
def test_flask_call_prints_the_uuids(runner):
    responses.post(CALLS_URL, json=CREATED, status=201)
    result = runner.invoke(args=["call", "447700900000", "--say", "hello"])
    assert result.exit_code == 0, result.output
    assert CREATED["uuid"] in result.output and CREATED["conversation_uuid"] in result.output


@responses.activate
def test_flask_call_error_is_one_line_and_exit_code_no_traceback(runner):
    responses.post(CALLS_URL, json={"title": "Unauthorized"}, status=401)
    result = runner.invoke(args=["call", "447700900000"])
    assert result.exit_code == EXIT_AUTH
    assert result.output.strip().startswith("error: Vonage refused the credentials (401)")
    assert "Traceback" not in result.output


def test_flask_call_refuses_premium_rate(runner):
    result = runner.invoke(args=["call", "+44 909 879 0000"])
    assert result.exit_code == EXIT_REFUSED and "PREMIUM_RATE" in result.output


def test_flask_token_prints_a_jwt(runner, key_pair):
    result = runner.invoke(args=["token", "Alice", "--ttl", "15m"])
    assert result.exit_code == 0
    claims = jwt.decode(result.output.strip(), key_pair[1], algorithms=["RS256"])
    assert claims["sub"] == "Alice" and claims["exp"] - claims["iat"] == 900


@responses.activate
def test_flask_webhooks_prints_what_changed(runner):
    responses.get(APPLICATION_URL, json=APPLICATION)
    responses.put(APPLICATION_URL, json=APPLICATION)
    result = runner.invoke(args=["webhooks", "https://new.ngrok.app"])
    assert result.exit_code == 0, result.output
    assert "->  POST https://new.ngrok.app/voice/event" in result.output


def test_the_server_starts_and_connects_calls_without_any_vonage_credentials(database_url):
    with built_app({"DATABASE_URL": database_url}) as app:
        settings = app.config["SETTINGS"]
        assert (settings.application_id, settings.private_key, settings.api_key) == (None, None, None)
        response = app.test_client().get("/voice/answer?to=447700900000")
    assert response.status_code == 200
    assert parse_ncco(response.get_json())[1].endpoint[0].number == "447700900000"


def test_a_worker_serving_calls_has_not_loaded_the_sdks_rest_client_nor_the_helper():
    """The answer and event paths never need the Vonage SDK's client, nor PyJWT (the check is written out in
    signatures.py; PyJWT only makes tokens): a worker must not pay for importing them."""
    import subprocess
    import sys

    from conftest import ROOT

    script = (
        "import sys, tempfile\n"
        "from app import create_app\n"
        "folder = tempfile.mkdtemp()\n"
        "app = create_app({'DATABASE_URL': f'sqlite:///{folder}/calls.db', 'INSTANCE_PATH': folder})\n"
        "client = app.test_client()\n"
        "assert client.get('/voice/answer?to=447700900000').status_code == 200\n"
        "assert client.post('/voice/event', json={'status': 'started', 'uuid': 'u1'}).status_code == 204\n"
        "loaded = [name for name in sys.modules if name.split('.')[0] in\n"
        "          ('vonage', 'vonage_http_client', 'vonage_voice', 'vonage_helper', 'simulator', 'pydantic', 'requests',\n"
        "           'jwt', 'cryptography')]\n"
        "print('LOADED=' + ','.join(sorted(loaded)), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (loaded,) = [line for line in result.stderr.splitlines() if line.startswith("LOADED=")]
    assert loaded == "LOADED="
