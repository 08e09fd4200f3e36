"""`flask webhooks`: pointing the application here records what it had, --show tells where it points, --restore
puts it back; nothing but the three voice webhooks ever changes. Vonage is intercepted with `responses`."""

import json

import pytest
import requests
import responses

from support.ngrok_standin import (
    APPLICATION_ID,
    ORIGINAL_WEBHOOKS,
    ApplicationStandIn,
    NgrokStandIn,
    all_but_webhooks,
    application,
    closed_port_url,
    tunnel,
    webhooks_at,
)
from vonage_helper.backups import WebhookBackup

APPLICATION_URL = f"https://api.nexmo.com/v2/applications/{APPLICATION_ID}"


@pytest.fixture
def ngrok():
    stand_in = NgrokStandIn()
    stand_in.serve(tunnel("https://abc.ngrok-free.app", "http://localhost:3000"))
    yield stand_in
    stand_in.close()


@pytest.fixture
def extra_env():
    """Settings a test adds (by parametrizing this name)."""
    return {}


@pytest.fixture
def settings_env(ngrok, extra_env):
    return {
        "VONAGE_APPLICATION_ID": APPLICATION_ID,
        "VONAGE_API_KEY": "abcd1234",
        "VONAGE_API_SECRET": "s3cret-api",
        "NGROK_API_URL": ngrok.url,
        "PORT": "3000",
        **extra_env,
    }


@pytest.fixture
def instance(tmp_path):
    """The instance folder the app's settings name (INSTANCE_PATH, in this test's own directory)."""
    return tmp_path / "instance"


@pytest.fixture
def runner(app, instance):
    return app.test_cli_runner()


@pytest.fixture
def record(instance):
    return instance / f"webhooks-backup-{APPLICATION_ID}.json"


@pytest.fixture
def vonage():
    """ApplicationStandIn behind the SDK's real HTTP client."""
    stand_in = ApplicationStandIn(application())

    def answer(request):
        body = json.loads(request.body) if request.body else None
        return 200, {"Content-Type": "application/json"}, json.dumps(stand_in.handle(request.method, body))

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, APPLICATION_URL, callback=answer)
        mock.add_callback(responses.PUT, APPLICATION_URL, callback=answer)
        yield stand_in


def voice_webhooks_now(vonage: ApplicationStandIn) -> dict:
    return vonage.document["capabilities"]["voice"]["webhooks"]


def test_pointing_records_the_earlier_webhooks_in_a_file_only_the_owner_can_read(runner, vonage, record):
    result = runner.invoke(args=["webhooks", "https://new.example.com"])
    assert result.exit_code == 0, result.output
    assert json.loads(record.read_text())["webhooks"] == {**ORIGINAL_WEBHOOKS, "fallback_answer_url": None}
    assert record.stat().st_mode & 0o777 == 0o600
    assert voice_webhooks_now(vonage) == webhooks_at("https://new.example.com")


def test_ngrok_points_at_the_tunnel_and_puts_every_other_setting_back_as_it_was(runner, vonage):
    result = runner.invoke(args=["webhooks", "--ngrok"])
    assert result.exit_code == 0, result.output
    assert "->  GET https://abc.ngrok-free.app/voice/answer" in result.output
    (put,) = vonage.puts()
    # Timeouts the application had stay; the capability the SDK's models do not know (network_apis) is kept.
    assert put["capabilities"]["voice"]["webhooks"] == webhooks_at("https://abc.ngrok-free.app")
    assert all_but_webhooks(put) == all_but_webhooks(application())


def test_a_second_ngrok_with_a_new_url_keeps_the_original_record_and_restore_puts_it_back(
    runner, vonage, ngrok, record
):
    assert runner.invoke(args=["webhooks", "--ngrok"]).exit_code == 0
    ngrok.serve(tunnel("https://new.ngrok-free.app", "http://localhost:3000"))
    assert runner.invoke(args=["webhooks", "--ngrok"]).exit_code == 0
    assert voice_webhooks_now(vonage) == webhooks_at("https://new.ngrok-free.app")
    assert json.loads(record.read_text())["webhooks"] == {**ORIGINAL_WEBHOOKS, "fallback_answer_url": None}

    result = runner.invoke(args=["webhooks", "--restore"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "put back the application's earlier voice webhooks:"
    assert "fallback_answer_url  GET https://new.ngrok-free.app/voice/fallback  ->  (not set)" in result.output
    assert voice_webhooks_now(vonage) == ORIGINAL_WEBHOOKS
    assert all(all_but_webhooks(put) == all_but_webhooks(application()) for put in vonage.puts())
    assert not record.exists()


def test_pointing_after_someone_changed_the_application_records_their_settings(runner, vonage, record):
    assert runner.invoke(args=["webhooks", "--ngrok"]).exit_code == 0
    theirs = {"answer_url": {"address": "https://theirs.example/answer", "http_method": "POST"}}
    vonage.document["capabilities"]["voice"]["webhooks"] = theirs
    assert runner.invoke(args=["webhooks", "--ngrok"]).exit_code == 0
    assert json.loads(record.read_text())["webhooks"] == {
        **theirs,
        "event_url": None,
        "fallback_answer_url": None,
    }


@pytest.mark.parametrize(
    "pointed_at, extra_env, verdict",
    [
        ("https://abc.ngrok-free.app", {}, "this server: yes, through the ngrok tunnel https://abc.ngrok-free.app"),
        ("https://me.example.com", {"PUBLIC_URL": "https://me.example.com"}, "this server: yes, through PUBLIC_URL"),
        (
            "https://old.ngrok-free.app",
            {"PUBLIC_URL": "https://me.example.com"},
            "this server: no (it is not the ngrok tunnel https://abc.ngrok-free.app or PUBLIC_URL https://me.example.com)",
        ),
    ],
)
def test_show_prints_the_webhooks_and_whether_they_are_this_server(runner, vonage, pointed_at, verdict):
    vonage.document["capabilities"]["voice"]["webhooks"] = webhooks_at(pointed_at)
    result = runner.invoke(args=["webhooks", "--show"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1:4] == [
        f"  answer_url           GET {pointed_at}/voice/answer",
        f"  event_url            POST {pointed_at}/voice/event",
        f"  fallback_answer_url  GET {pointed_at}/voice/fallback",
    ]
    assert lines[4].startswith(verdict)
    assert vonage.puts() == []


@responses.activate
def test_restore_without_a_record_is_one_line_and_asks_vonage_nothing(runner, record):
    result = runner.invoke(args=["webhooks", "--restore"])
    assert result.exit_code == 2
    assert result.output == (
        f"error: no record of earlier webhooks for application {APPLICATION_ID} at {record}; nothing to restore "
        "(a record is made when flask webhooks or AUTO_WEBHOOKS changes them)\n"
    )
    assert len(responses.calls) == 0


@pytest.mark.parametrize(
    "args, reply, exit_code, message",
    [
        (
            ["--show"],
            {"status": 401, "json": {"title": "Unauthorized"}},
            4,
            "Vonage refused the credentials (401): VONAGE_API_KEY and VONAGE_API_SECRET do not match",
        ),
        (
            ["--ngrok"],
            {"status": 429, "json": {"title": "Too Many Requests"}},
            6,
            "Vonage is rate limiting this account (429): wait a moment and try again",
        ),
        (
            ["--restore"],
            {"status": 503, "json": {"title": "Service Unavailable"}},
            7,
            "Vonage had a server error (503): try again shortly",
        ),
        (
            ["https://new.example.com"],
            {"body": requests.ConnectionError("down")},
            7,
            "cannot reach Vonage (ConnectionError); check the network, or VONAGE_API_HOST",
        ),
    ],
)
@responses.activate
def test_each_vonage_failure_is_one_line_and_an_exit_code(runner, instance, args, reply, exit_code, message):
    WebhookBackup(APPLICATION_ID, instance).save({**ORIGINAL_WEBHOOKS, "fallback_answer_url": None}, [])
    responses.get(APPLICATION_URL, **reply)
    result = runner.invoke(args=["webhooks", *args])
    assert result.exit_code == exit_code
    assert result.output.startswith(f"error: {message}")
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    "extra_env, tunnels, message",
    [
        ({"NGROK_API_URL": closed_port_url()}, [], "error: ngrok is not running: nothing answers at "),
        ({}, [tunnel("http://abc.ngrok-free.app", "3000", proto="http")], "error: ngrok runs but has no https tunnel"),
    ],
)
@responses.activate
def test_no_usable_tunnel_stops_ngrok_before_vonage_is_asked(runner, ngrok, tunnels, message):
    ngrok.serve(*tunnels)
    result = runner.invoke(args=["webhooks", "--ngrok"])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1
    assert len(responses.calls) == 0


@pytest.mark.parametrize("args", [[], ["--show", "--restore"], ["https://new.example.com", "--ngrok"]])
def test_webhooks_takes_exactly_one_of_its_choices(runner, args):
    result = runner.invoke(args=["webhooks", *args])
    assert result.exit_code == 2
    assert result.output == (
        "error: give one of PUBLIC_URL, --ngrok, --show or --restore; for example flask webhooks --ngrok\n"
    )
