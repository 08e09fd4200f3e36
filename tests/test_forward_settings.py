"""The forwarding settings (FORWARD_URL, FORWARD_SECRET, FORWARD_EVENTS, FORWARD_TIMEOUT): each mistake one line
naming the variable with an example, at start-up; and the `flask forward` commands, one line per result."""

from __future__ import annotations

import json

import pytest

from config import ConfigError, settings_from
from support.forwarding import SECRET, Receiver
from support.servers import free_port, start_up_error

OTHER = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


def refusal(**values: str) -> str:
    with pytest.raises(ConfigError) as error:
        settings_from(values)
    (line,) = str(error.value).splitlines()
    return line


def test_forward_url_without_a_secret_is_refused_naming_forward_secret_with_an_example():
    line = refusal(FORWARD_URL="https://app.example.com/hook")
    assert line.startswith("FORWARD_URL: ") and "FORWARD_SECRET is not set" in line and "FORWARD_SECRET=whsec_" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://app.example.com/hook", "plain http"),
        ("ftp://app.example.com/hook", "not an https URL"),
        ("https://user@app.example.com/hook", "not an https URL"),
        (",", "holds no URL"),
    ],
)
def test_forward_url_must_be_https_or_plain_http_on_loopback(url, says):
    line = refusal(FORWARD_URL=url, FORWARD_SECRET=SECRET)
    assert line.startswith("FORWARD_URL: ") and says in line and "for example FORWARD_URL=https://" in line


def test_several_endpoints_and_a_loopback_receiver_are_accepted():
    settings = settings_from(
        {"FORWARD_URL": "http://127.0.0.1:8080/a, https://b.example/c,http://[::1]:9/d", "FORWARD_SECRET": SECRET}
    )
    assert settings.forward_urls == ("http://127.0.0.1:8080/a", "https://b.example/c", "http://[::1]:9/d")


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "does not start with whsec_"),
        ("whsec_not base64!", "not whsec_ followed by base64"),
        ("whsec_c2hvcnQ=", "holds 5 bytes"),
        (f"{SECRET},{OTHER},{SECRET}", "holds 3 secrets"),
        (f"{SECRET},whsec_c2hvcnQ=", "the second secret holds 5 bytes"),
    ],
)
def test_forward_secret_must_be_one_or_two_standard_webhooks_secrets(secret, says):
    line = refusal(FORWARD_URL="https://a.example/h", FORWARD_SECRET=secret)
    assert line.startswith("FORWARD_SECRET: ") and says in line and "for example FORWARD_SECRET=whsec_" in line


def test_two_secrets_while_rotating_are_kept_and_never_shown():
    settings = settings_from({"FORWARD_URL": "https://a.example/h", "FORWARD_SECRET": f"{SECRET}, {OTHER}"})
    assert settings.forward_secrets == (SECRET, OTHER)
    assert SECRET not in repr(settings) and settings.described()["forward_secrets"] == "(2 set)"


def test_forward_events_names_statuses_and_answer_and_refuses_a_typo():
    settings = settings_from({"FORWARD_EVENTS": "completed, Busy,answer"})
    assert settings.forward_events == frozenset({"completed", "busy", "answer"})
    line = refusal(FORWARD_EVENTS="complted")
    assert line.startswith("FORWARD_EVENTS: 'complted' is no event status") and "for example FORWARD_EVENTS=" in line


def test_forward_timeout_defaults_to_15_and_is_1_to_120():
    assert settings_from({}).forward_timeout == 15
    assert refusal(FORWARD_TIMEOUT="0").startswith("FORWARD_TIMEOUT: 0 is outside 1-120")


def test_make_run_refuses_forward_url_without_a_secret_in_one_line(tmp_path):
    line = start_up_error(tmp_path, FORWARD_URL="https://app.example.com/hook")
    assert line.startswith("error: FORWARD_URL: ") and "FORWARD_SECRET" in line


@pytest.fixture
def settings_env(tmp_path):
    receiver = Receiver(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    return {"FORWARD_URL": f"{receiver.url},{dead}", "FORWARD_SECRET": SECRET, "FORWARD_TIMEOUT": "2"}


def test_flask_forward_test_sends_one_signed_message_to_each_endpoint_and_says_what_each_answered(
    runner, settings_env, tmp_path
):
    live, dead = settings_env["FORWARD_URL"].split(",")
    receiver = Receiver(tmp_path, int(live.split(":")[2].split("/")[0])).start()
    try:
        result = runner.invoke(args=["forward", "test"])
    finally:
        receiver.stop()
    ok, failed = result.output.splitlines()
    assert ok.startswith(f"ok: {live} answered 204") and failed.startswith(f"failed: {dead} cannot connect")
    assert result.exit_code == 1
    (got,) = receiver.requests()
    assert got["verified"] and got["type"] == "forward.test" and got["id"].startswith("test_")


def test_flask_forward_shows_each_endpoints_deliveries_and_last_error(runner, client, settings_env):
    assert client.post("/voice/event", json={"status": "started", "uuid": "l", "timestamp": "T1"}).status_code == 204
    result = runner.invoke(args=["forward"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    for line, endpoint in zip(lines, settings_env["FORWARD_URL"].split(",")):
        assert line.startswith(f"{endpoint}  pending ") and "  delivered " in line and "failing since" in line


def test_flask_forward_replay_refuses_a_bad_age_in_one_line(runner):
    result = runner.invoke(args=["forward", "replay", "--since", "soon"])
    assert result.exit_code == 2 and "error: --since:" in result.output and "for example --since 2h" in result.output


def test_flask_forward_without_forward_url_says_how_to_set_it(tmp_path):
    from conftest import built_app

    with built_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}) as app:
        result = app.test_cli_runner().invoke(args=["forward"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: FORWARD_URL is not set") and "FORWARD_URL=https://" in result.output


def test_the_api_says_where_each_event_was_forwarded(client, settings_env, call_log):
    from conftest import CALL_LOG_TOKEN

    payload = {"status": "started", "uuid": "leg-f", "conversation_uuid": "CON-F", "timestamp": "T1"}
    assert client.post("/voice/event", json=payload).status_code == 204
    call = client.get("/api/calls/CON-F", headers={"Authorization": f"Bearer {CALL_LOG_TOKEN}"}).get_json()
    (event,) = call["legs"][0]["events"]
    assert set(event["forwarded"]) == set(settings_env["FORWARD_URL"].split(","))
    assert json.dumps(event["forwarded"])


def test_the_timeline_says_whether_each_event_was_forwarded(client, settings_env):
    from conftest import CALL_LOG_TOKEN

    payload = {"status": "started", "uuid": "leg-t", "conversation_uuid": "CON-T", "timestamp": "T1"}
    assert client.post("/voice/event", json=payload).status_code == 204
    headers = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}
    page = client.get("/calls/CON-T/timeline", headers=headers).get_data(as_text=True)
    assert "forwarded: " in page and "of 2 endpoints delivered" in page


def test_flask_forward_replay_makes_the_deliveries_of_an_endpoint_added_since(tmp_path):
    from conftest import built_app

    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "FORWARD_SECRET": SECRET, "FORWARD_TIMEOUT": "1"}
    first, added = (f"http://127.0.0.1:{free_port()}/{name}" for name in ("first", "added"))
    with built_app({**database, "FORWARD_URL": first}) as app:
        payload = {"status": "started", "uuid": "leg-r", "conversation_uuid": "CON-R", "timestamp": "T1"}
        assert app.test_client().post("/voice/event", json=payload).status_code == 204
    with built_app({**database, "FORWARD_URL": f"{first},{added}"}) as app:
        result = app.test_cli_runner().invoke(args=["forward", "replay", "--since", "1h"])
        again = app.test_cli_runner().invoke(args=["forward", "replay", "--since", "1h"])
    assert result.exit_code == 0, result.output
    replayed, made = result.output.splitlines()
    assert replayed.startswith("replaying 1 deliveries made since") and made.startswith("sending 1 more never made")
    assert again.output.count("\n") == 1, again.output


def test_forward_events_names_the_stored_recordings_as_the_deliveries_do():
    from calllog.deliveries import ANSWER_DECISIONS, STORED_RECORDINGS
    from config import ANSWER_DECISIONS as ANSWERS_SETTING
    from config import STORED_RECORDINGS as RECORDINGS_SETTING
    from config import settings_from as read

    assert (STORED_RECORDINGS, ANSWER_DECISIONS) == (RECORDINGS_SETTING, ANSWERS_SETTING)
    assert read(
        {"FORWARD_URL": "http://127.0.0.1:9/x", "FORWARD_SECRET": OTHER, "FORWARD_EVENTS": "recording"}
    ).forward_events == {"recording"}
