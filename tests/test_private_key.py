"""VONAGE_PRIVATE_KEY checked at start-up: a key that cannot sign Vonage's RS256 application JWTs stops the server
and every `flask` command with one line naming the setting, what is wrong and where to get a good key; and the
commands that use the key load it in full first (with cryptography, which the server's processes never import)."""

import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from config import ConfigError, load_settings, settings_from
from conftest import ROOT
from support import keys
from support.servers import run_env, start_up_error
from vonage_helper import clients
from vonage_helper.clients import EXIT_SETTINGS, HelperError, private_key_pem
from vonage_helper.tokens import client_token

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
FIX = "from your application's page in the Vonage dashboard"
BAD = keys.bad_variants()


def settings_with_key(monkeypatch, tmp_path, value: str):
    monkeypatch.setenv("VONAGE_PRIVATE_KEY", value)
    return load_settings(tmp_path / "absent.env")


def refusal(monkeypatch, tmp_path, value: str) -> str:
    with pytest.raises(ConfigError) as error:
        settings_with_key(monkeypatch, tmp_path, value)
    message = str(error.value)
    assert message.startswith("VONAGE_PRIVATE_KEY: "), message
    assert "\n" not in message
    assert FIX in message, message
    return message


@pytest.mark.parametrize("content, says", BAD.values(), ids=BAD.keys())
def test_a_key_file_that_cannot_sign_stops_start_up_with_one_line(monkeypatch, tmp_path, content, says):
    path = tmp_path / "private.key"
    path.write_bytes(content)
    message = refusal(monkeypatch, tmp_path, str(path))
    assert says in message
    assert str(path) in message
    # Nothing of the key itself is shown.
    for line in content.splitlines():
        if len(line) > 20 and not line.startswith(b"-----"):
            assert line[:20].decode(errors="replace") not in message


@pytest.mark.parametrize("name", ["modulus-changed", "public-key", "encrypted-pkcs8", "ec-pkcs8", "lines-missing"])
def test_pem_text_given_in_the_setting_is_checked_the_same_way(monkeypatch, tmp_path, name):
    content, says = BAD[name]
    message = refusal(monkeypatch, tmp_path, content.decode().replace("\n", "\\n"))
    assert says in message and "the PEM text in the setting" in message


def test_a_missing_file_is_named_with_the_folder_it_was_looked_for_in(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    message = refusal(monkeypatch, tmp_path, "./private.key")
    assert message.startswith(f"VONAGE_PRIVATE_KEY: file not found at ./private.key (looked for in {tmp_path})")


def test_a_folder_is_not_a_key_file(monkeypatch, tmp_path):
    assert "is a folder" in refusal(monkeypatch, tmp_path, str(tmp_path))


def test_a_key_file_the_server_may_not_read_says_why_even_under_root(monkeypatch, tmp_path):
    path = tmp_path / "private.key"
    path.write_bytes(keys.pkcs8())

    def refused(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refused)
    assert f"cannot read {path} (Permission denied)" in refusal(monkeypatch, tmp_path, str(path))


def test_a_long_value_that_is_neither_pem_nor_a_file_is_not_repeated(monkeypatch, tmp_path):
    body = keys.pkcs8().decode().split("\n", 1)[1].rsplit("-----END", 1)[0].replace("\n", "")
    message = refusal(monkeypatch, tmp_path, body)
    assert "neither PEM text (no -----BEGIN line) nor the path of a file" in message
    assert body[:20] not in message


@pytest.mark.parametrize(
    "content",
    [
        keys.pkcs8(),
        keys.pkcs1(),
        keys.pkcs8().replace(b"\n", b"\r\n"),
        b"Bag Attributes\n    friendlyName: voice\n" + keys.pkcs8(),
        keys.pkcs8(keys.rsa_key(4096)),
    ],
    ids=["pkcs8", "pkcs1", "crlf", "text-before-the-key", "4096-bit"],
)
def test_a_good_rsa_key_file_starts(monkeypatch, tmp_path, content):
    path = tmp_path / "private.key"
    path.write_bytes(content)
    assert settings_with_key(monkeypatch, tmp_path, str(path)).private_key == str(path)


@pytest.mark.parametrize("escaped", [True, False], ids=["escaped-newlines", "newlines"])
def test_good_pem_text_in_the_setting_starts(monkeypatch, tmp_path, escaped):
    pem = keys.pkcs8().decode()
    value = pem.replace("\n", "\\n") if escaped else pem
    assert settings_with_key(monkeypatch, tmp_path, value).private_key == value.strip()


def test_without_the_setting_nothing_is_checked(monkeypatch, tmp_path):
    monkeypatch.delenv("VONAGE_PRIVATE_KEY", raising=False)
    assert load_settings(tmp_path / "absent.env").private_key is None


def test_the_check_imports_no_cryptography(tmp_path):
    """Settings are loaded in every worker and in the writer, which never import cryptography (nor PyJWT)."""
    path = tmp_path / "private.key"
    path.write_bytes(keys.pkcs8())
    script = (
        "import sys\n"
        "from config import load_settings\n"
        "settings = load_settings(None)\n"
        "assert settings.private_key\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('cryptography', 'jwt', 'vonage')))\n"
    )
    environment = run_env(VONAGE_PRIVATE_KEY=str(path))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_make_run_refuses_a_bad_key_with_one_line(tmp_path):
    key = tmp_path / "keys" / "private.key"
    key.parent.mkdir()
    key.write_bytes(BAD["public-key"][0])
    folder = tmp_path / "tmp"
    folder.mkdir()
    line = start_up_error(folder, VONAGE_PRIVATE_KEY=str(key))
    assert line.startswith(f"error: VONAGE_PRIVATE_KEY: {key} holds a public key") and FIX in line


# The commands that sign with the key load it in full, with cryptography, before they use it.


def test_the_commands_get_a_pkcs1_key_as_the_pkcs8_the_sdk_takes(tmp_path):
    path = tmp_path / "private.key"
    path.write_bytes(keys.pkcs1())
    pem = private_key_pem(str(path))
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    assert loaded.private_numbers() == keys.rsa_key().private_numbers()


def test_a_client_sdk_token_is_signed_with_a_pkcs1_key(tmp_path):
    path = tmp_path / "private.key"
    path.write_bytes(keys.pkcs1())
    settings = settings_from({"VONAGE_APPLICATION_ID": APPLICATION_ID, "VONAGE_PRIVATE_KEY": str(path)})
    token = client_token(settings, "Alice", 60)
    assert jwt.decode(token, keys.rsa_key().public_key(), algorithms=["RS256"])["sub"] == "Alice"


@pytest.mark.parametrize("name", ["modulus-changed", "ec-pkcs8", "encrypted-pkcs1", "cut-in-half"])
def test_the_commands_refuse_a_bad_key_in_one_line_even_past_start_up(tmp_path, name):
    """settings_from (tests, create_app with a mapping) reads no file, so the commands check the key themselves."""
    path = tmp_path / "private.key"
    path.write_bytes(BAD[name][0])
    settings = settings_from({"VONAGE_APPLICATION_ID": APPLICATION_ID, "VONAGE_PRIVATE_KEY": str(path)})
    with pytest.raises(HelperError) as error:
        client_token(settings, "Alice", 60)
    assert error.value.exit_code == EXIT_SETTINGS
    assert error.value.message.startswith("VONAGE_PRIVATE_KEY: ") and BAD[name][1] in error.value.message
    assert FIX in error.value.message and "\n" not in error.value.message


def test_a_key_cryptography_cannot_load_is_one_line_too(tmp_path, monkeypatch):
    """Whatever gets past the structural check and still does not load is refused by the full load, not a traceback."""
    monkeypatch.setattr(clients, "private_key_text", lambda setting: keys.pem_of("PRIVATE KEY", b"\x30\x00").decode())
    with pytest.raises(HelperError) as error:
        private_key_pem(str(tmp_path / "private.key"))
    assert error.value.exit_code == EXIT_SETTINGS
    assert error.value.message.startswith(
        f"VONAGE_PRIVATE_KEY: {tmp_path / 'private.key'} does not load as a private key"
    )
    assert FIX in error.value.message
