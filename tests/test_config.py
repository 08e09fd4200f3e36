"""Settings: defaults, parsing, and one-line errors that name the variable and a valid example."""

import pytest
from phonenumbers import PhoneNumberType

import config
from config import ConfigError, Settings, load_settings, settings_from
from conftest import ROOT


def test_defaults_start_without_any_setting():
    settings = settings_from({})
    assert settings.port == 3000 and settings.host == "127.0.0.1"
    assert settings.vonage_number is None
    assert settings.blocked_number_types == {PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST}
    assert settings.greeting == "Please wait while we connect you."
    assert settings.tts_language == "en-US"
    assert settings.log_format == "pretty"


def test_vonage_number_is_normalised():
    assert settings_from({"VONAGE_NUMBER": "+44 7700 900001"}).vonage_number == "447700900001"


def test_lists_are_parsed_and_case_folded():
    settings = settings_from({"ALLOWED_COUNTRIES": "gb, ie", "BLOCKED_NUMBER_TYPES": "premium-rate, voip"})
    assert settings.allowed_countries == {"GB", "IE"}
    assert settings.blocked_number_types == {PhoneNumberType.PREMIUM_RATE, PhoneNumberType.VOIP}


def test_empty_blocked_number_types_blocks_nothing():
    assert settings_from({"BLOCKED_NUMBER_TYPES": ""}).blocked_number_types == frozenset()


def test_tts_language_takes_vonage_spelling():
    assert settings_from({"TTS_LANGUAGE": "en-gb"}).tts_language == "en-GB"


def test_settings_feed_policy_and_call_plan():
    settings = settings_from({"VONAGE_NUMBER": "447700900001", "DEFAULT_REGION": "gb", "RINGING_TIMEOUT": "20"})
    assert settings.destination_policy.own_number == "447700900001"
    assert settings.destination_policy.default_region == "GB"
    assert settings.call_plan.from_number == "447700900001"
    assert settings.call_plan.ringing_timeout == 20


@pytest.mark.parametrize(
    "variable, value, example",
    [
        ("PORT", "http", "PORT=3000"),
        ("PORT", "70000", "PORT=3000"),
        ("WORKERS", "0", "WORKERS=2"),
        ("VONAGE_NUMBER", "+44 12", "VONAGE_NUMBER=447700900001"),
        ("DEFAULT_REGION", "England", "DEFAULT_REGION=GB"),
        ("ALLOWED_COUNTRIES", "GB,XX", "ALLOWED_COUNTRIES=GB,IE"),
        ("BLOCKED_NUMBER_TYPES", "expensive", "BLOCKED_NUMBER_TYPES=PREMIUM_RATE,SHARED_COST"),
        ("GREETING", "x" * 1501, 'GREETING="Please wait while we connect you."'),
        ("TTS_LANGUAGE", "klingon", "TTS_LANGUAGE=en-GB"),
        ("RINGING_TIMEOUT", "121", "RINGING_TIMEOUT=60"),
        ("CALL_LIMIT", "7201", "CALL_LIMIT=3600"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT=json"),
    ],
)
def test_bad_value_stops_with_one_line_naming_variable_and_example(variable, value, example):
    with pytest.raises(ConfigError) as error:
        settings_from({variable: value})
    message = str(error.value)
    assert message.startswith(f"{variable}: ")
    assert message.endswith(f"for example {example}")
    assert "\n" not in message


def test_every_variable_sets_a_settings_field():
    names = set(Settings.__dataclass_fields__)
    assert {name for name, _, _ in config.VARIABLES.values()} <= names


def test_environment_overrides_env_file(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=4000\nGREETING=From the file\n")
    monkeypatch.setenv("PORT", "5000")
    monkeypatch.delenv("GREETING", raising=False)
    settings = load_settings(env_file)
    assert settings.port == 5000
    assert settings.greeting == "From the file"


def test_without_an_env_file_the_environment_alone_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("PORT", "4321")
    monkeypatch.setenv("GREETING", "From the environment")
    settings = load_settings(tmp_path / "absent.env")
    assert (settings.port, settings.greeting) == (4321, "From the environment")


def test_secrets_never_show_in_the_settings_repr_or_description():
    secrets = {
        "VONAGE_SIGNATURE_SECRET": "sig-secret-value-0123456789",
        "CALL_LOG_TOKEN": "call-log-token-value-0123456789",
        "VONAGE_PRIVATE_KEY": "/keys/private-key-path.key",
        "VONAGE_API_SECRET": "api-secret-value-0123",
    }
    settings = settings_from(secrets)
    shown = repr(settings) + str(settings) + repr(settings.described())
    for value in secrets.values():
        assert value not in shown
    assert settings.described()["signature_secrets"] == "(1 set)"
    assert settings.described()["api_secret"] == "(set)"


def test_tts_languages_are_the_ones_the_vonage_sdk_knows():
    from vonage_voice.models import TtsLanguageCode

    from ncco import TTS_LANGUAGES

    assert sorted(TTS_LANGUAGES) == sorted(code.value for code in TtsLanguageCode)


def test_env_example_lists_every_variable():
    content = (ROOT / ".env.example").read_text()
    for variable in config.VARIABLES:
        assert f"{variable}=" in content, variable


def test_log_format_line_is_accepted_and_a_wrong_format_lists_all_three():
    assert settings_from({"LOG_FORMAT": "Line"}).log_format == "line"
    with pytest.raises(ConfigError) as error:
        settings_from({"LOG_FORMAT": "xml"})
    assert "'xml' is not one of pretty, json, line" in str(error.value)


@pytest.mark.parametrize(
    "value, no_color", [(None, False), ("", False), ("1", True), ("0", True), ("false", True), (" ", True)]
)
def test_no_color_turns_colour_off_for_any_value_but_the_empty_text(value, no_color):
    assert settings_from({} if value is None else {"NO_COLOR": value}).no_color is no_color


@pytest.mark.parametrize(
    "value, which",
    [("short-secret", "it is 12"), ("a-long-enough-old-secret,0123456789abcde", "the second secret is 15")],
    ids=["one", "the-second-of-two"],
)
def test_a_signature_secret_under_16_characters_is_refused(value, which):
    with pytest.raises(ConfigError) as error:
        settings_from({"VONAGE_SIGNATURE_SECRET": value})
    message = str(error.value)
    assert message.startswith(f"VONAGE_SIGNATURE_SECRET: {which} characters long")
    assert "an HMAC key that short is guessable" in message
    assert "the dashboard may accept one that short, this server does not" in message
    assert "API settings" in message and "signature secret" in message
    assert "\n" not in message
    for secret in value.split(","):
        assert secret not in message


def test_a_signature_secret_of_16_characters_is_accepted():
    assert settings_from({"VONAGE_SIGNATURE_SECRET": "0123456789abcdef, " + "x" * 40}).signature_secrets == (
        "0123456789abcdef",
        "x" * 40,
    )
