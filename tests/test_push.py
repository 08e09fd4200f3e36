"""`flask push android|ios` run as a user runs them, against the stand-in of Vonage's push-token endpoints over
HTTPS on loopback: good files are uploaded as Vonage takes them; every wrong file is one line, and nothing sent."""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from support import keys
from support.commands import assert_one_error_line, flask

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
PUSH_PATH = f"/v1/applications/{APPLICATION_ID}/push_tokens"


@pytest.fixture
def push(project, vonage, certificate):
    def run(*args: str):
        settings = {"VONAGE_APPLICATION_ID": APPLICATION_ID, "VONAGE_PRIVATE_KEY": str(project / "private.key")}
        return flask(project, vonage, certificate, "push", *args, **settings)

    return run


def service_account(**changes) -> dict:
    account = {
        "type": "service_account",
        "project_id": "voice-app-1234",
        "private_key_id": "abc123",
        "private_key": keys.pkcs8(keys.rsa_key()).decode(),
        "client_email": "firebase-adminsdk@voice-app-1234.iam.gserviceaccount.com",
    }
    account.update(changes)
    return {name: value for name, value in account.items() if value is not None}


def apns_p12(password: bytes | None, days: int = 365) -> bytes:
    key = keys.rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Apple Push Services: com.example.voice")])
    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(days=400) if days < 0 else now - datetime.timedelta(days=1)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"voip", key, built, None, encryption)


def ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_android_uploads_the_service_account_and_its_project(push, vonage, tmp_path):
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(service_account()))
    assert "uploaded the android push credentials" in ok(push("android", "--service-account", str(path)))
    (sent,) = vonage.requests_to("PUT", f"{PUSH_PATH}/android")
    assert sent.body["projectId"] == "voice-app-1234"
    assert json.loads(sent.body["token"]) == service_account()


def test_ios_uploads_the_p12_hex_encoded_with_its_password(push, vonage, tmp_path):
    path = tmp_path / "apns.p12"
    path.write_bytes(apns_p12(b"p12-password"))
    ok(push("ios", "--certificate", str(path), "--password", "p12-password"))
    (sent,) = vonage.requests_to("PUT", f"{PUSH_PATH}/ios")
    assert bytes.fromhex(sent.body["token"]) == path.read_bytes() and sent.body["password"] == "p12-password"


@pytest.mark.parametrize(
    "content, says",
    [
        ("{not json", "is not JSON"),
        (json.dumps(service_account(type="authorized_user")), '"type" is not "service_account"'),
        (json.dumps(service_account(project_id=None)), 'no "project_id"'),
        (
            json.dumps(service_account(private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")),
            "does not load",
        ),
    ],
    ids=["not-json", "wrong-type", "no-project", "broken-key"],
)
def test_a_file_that_is_no_service_account_is_one_line_and_nothing_is_sent(push, vonage, tmp_path, content, says):
    path = tmp_path / "service-account.json"
    path.write_text(content)
    assert_one_error_line(push("android", "--service-account", str(path)), str(path), says, exit_code=2)
    assert vonage.received == []


def test_a_missing_file_is_one_line(push, tmp_path):
    assert_one_error_line(push("android", "--service-account", str(tmp_path / "absent.json")), "no such file")


@pytest.mark.parametrize(
    "p12, password, says",
    [
        (b"not a p12 at all", None, "is not a .p12"),
        ("locked", None, "without a password"),
        ("locked", "wrong", "with that --password"),
        ("expired", None, "expired on"),
    ],
)
def test_a_p12_that_will_not_do_is_one_line_and_nothing_is_sent(push, vonage, tmp_path, p12, password, says):
    content = {"locked": apns_p12(b"right"), "expired": apns_p12(None, days=-30)}.get(p12, p12)
    path = tmp_path / "apns.p12"
    path.write_bytes(content)
    args = ["ios", "--certificate", str(path), *(["--password", password] if password else [])]
    assert_one_error_line(push(*args), says, exit_code=2)
    assert vonage.received == []


def test_vonage_refusing_is_one_line(push, vonage, tmp_path):
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(service_account()))
    vonage.fail("500")
    assert_one_error_line(push("android", "--service-account", str(path)), "server error (500)", exit_code=7)


def test_a_missing_option_is_one_line(push):
    assert_one_error_line(push("ios"), "--certificate", exit_code=2)
