"""The ngrok loop: finding the tunnel, AUTO_WEBHOOKS pointing the application at it while `make run` serves, and
putting the earlier webhooks back when it stops. ngrok's local API and Vonage's Applications API are stand-ins."""

import json
import signal
import ssl
import subprocess
import threading
import uuid

import pytest

from config import ConfigError, settings_from
from support.ngrok_standin import (
    APPLICATION_ID,
    ORIGINAL_WEBHOOKS,
    ApplicationStandIn,
    NgrokStandIn,
    all_but_webhooks,
    application,
    closed_port_url,
    tunnel,
    vonage_https_stand_in,
    webhooks_at,
)
from support.servers import CHILD_FOLDER, SERVE, free_port, run_env, wait_until_listening
from vonage_helper.auto import AutoWebhooks
from vonage_helper.ngrok import NgrokError, find_tunnel, forwarded_port, tunnel_notes


@pytest.fixture
def ngrok():
    stand_in = NgrokStandIn()
    yield stand_in
    stand_in.close()


def settings_with(ngrok_url: str, port: int = 3000, **more) -> object:
    return settings_from({"NGROK_API_URL": ngrok_url, "PORT": str(port), **more})


# --- Finding the tunnel -------------------------------------------------------------------------------------------


def test_the_https_tunnel_to_this_servers_port_is_chosen(ngrok):
    ngrok.serve(
        tunnel("https://other.ngrok-free.app", "http://localhost:8080"),
        tunnel("http://plain.ngrok-free.app", "http://localhost:3000", proto="http"),
        tunnel("https://abc.ngrok-free.app", "http://localhost:3000"),
    )
    found = find_tunnel(settings_with(ngrok.url))
    assert (found.public_url, found.forwards_here) == ("https://abc.ngrok-free.app", True)


def test_an_https_tunnel_to_another_port_is_used_with_a_warning(ngrok):
    ngrok.serve(tunnel("https://other.ngrok-free.app", "localhost:8080"))
    found = find_tunnel(settings_with(ngrok.url))
    assert found.public_url == "https://other.ngrok-free.app"
    assert "forwards to localhost:8080, not to this server's port 3000" in found.warning(3000)


def test_no_https_tunnel_is_one_line_saying_what_to_start(ngrok):
    ngrok.serve(tunnel("tcp://0.tcp.ngrok.io:12345", "localhost:22", proto="tcp"))
    with pytest.raises(NgrokError) as error:
        find_tunnel(settings_with(ngrok.url))
    assert error.value.message == "ngrok runs but has no https tunnel (tunnels: tcp); start one with `ngrok http 3000`"
    assert error.value.exit_code == 2 and error.value.running


def test_ngrok_not_running_is_one_line_saying_what_to_start():
    url = closed_port_url()
    with pytest.raises(NgrokError) as error:
        find_tunnel(settings_with(url))
    assert error.value.message.startswith(f"ngrok is not running: nothing answers at {url}/api/tunnels (")
    assert error.value.message.endswith(
        "start it with `ngrok http 3000`, or set NGROK_API_URL to its web interface address"
    )
    assert error.value.exit_code == 2 and not error.value.running


@pytest.mark.parametrize(
    "addr, port",
    [("3000", 3000), ("localhost:3000", 3000), ("http://localhost:3000", 3000), ("https://127.0.0.1", 443)],
)
def test_every_spelling_of_a_tunnels_address_gives_its_port(addr, port):
    assert forwarded_port(addr) == port


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("http://127.0.0.1:4040", "http://127.0.0.1:4040/api/tunnels"),
        ("http://127.0.0.1:4041/", "http://127.0.0.1:4041/api/tunnels"),
        ("http://ngrok:4040/api/tunnels", "http://ngrok:4040/api/tunnels"),
    ],
)
def test_ngrok_api_url_takes_the_base_or_the_full_url(raw, expected):
    assert settings_from({"NGROK_API_URL": raw}).ngrok_api_url == expected


@pytest.mark.parametrize(
    "variable, raw, message",
    [
        ("NGROK_API_URL", "127.0.0.1:4040", "NGROK_API_URL: '127.0.0.1:4040' is not the address of ngrok's local API"),
        ("AUTO_WEBHOOKS", "yes", "AUTO_WEBHOOKS: 'yes' is not supported (only ngrok; leave it empty for off)"),
    ],
)
def test_bad_ngrok_settings_stop_start_up_with_one_line(variable, raw, message):
    with pytest.raises(ConfigError) as error:
        settings_from({variable: raw})
    assert str(error.value).startswith(f"{message}; for example {variable}=")


@pytest.mark.parametrize("raw, expected", [("ngrok", "ngrok"), ("NGROK ", "ngrok"), ("", None)])
def test_auto_webhooks_is_ngrok_or_off(raw, expected):
    assert settings_from({"AUTO_WEBHOOKS": raw}).auto_webhooks == expected


# --- Start-up notes -----------------------------------------------------------------------------------------------


def test_startup_notes_show_the_public_urls_beside_the_local_ones(ngrok):
    import serve

    ngrok.serve(tunnel("https://abc.ngrok-free.app", "http://localhost:3000"))
    notes = serve.startup_notes(settings_with(ngrok.url, CALL_LOG_TOKEN="t" * 20))
    assert notes[3:8] == [
        "  fallback URL http://127.0.0.1:3000/voice/fallback",
        "  ngrok        https://abc.ngrok-free.app -> http://localhost:3000",
        "  answer URL   https://abc.ngrok-free.app/voice/answer   (GET)",
        "  event URL    https://abc.ngrok-free.app/voice/event    (POST)",
        "  fallback URL https://abc.ngrok-free.app/voice/fallback",
    ]


def test_startup_notes_without_ngrok_are_as_before():
    import serve

    notes = serve.startup_notes(settings_with(closed_port_url(), CALL_LOG_TOKEN="t" * 20))
    assert notes[3:5] == [
        "  fallback URL http://127.0.0.1:3000/voice/fallback",
        "  health       http://127.0.0.1:3000/health",
    ]
    assert not any("ngrok" in note for note in notes)
    assert tunnel_notes(settings_with(closed_port_url())) == []


# --- AutoWebhooks in this process ---------------------------------------------------------------------------------


class Said:
    """AutoWebhooks' `say`: keeps its lines and wakes whoever waits for one."""

    def __init__(self):
        self.lines: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, line: str, err: bool = False) -> None:
        with self.changed:
            self.lines.append(line)
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: any(text in line for line in self.lines), timeout), self.lines


@pytest.fixture
def account_env():
    return {"VONAGE_APPLICATION_ID": APPLICATION_ID, "VONAGE_API_KEY": "abcd1234", "VONAGE_API_SECRET": "s3cret-api"}


@pytest.fixture
def vonage(certificate, monkeypatch):
    """ApplicationStandIn over HTTPS; this process's SDK client calls it."""
    stand_in = ApplicationStandIn(application())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = vonage_https_stand_in(stand_in, context)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    stand_in.host = f"127.0.0.1:{server.port}"
    yield stand_in
    server.close()


def test_auto_webhooks_without_credentials_warns_once_and_sends_nothing(ngrok, tmp_path):
    ngrok.serve(tunnel("https://abc.ngrok-free.app", "http://localhost:3000"))
    said = Said()
    settings = settings_with(ngrok.url, VONAGE_APPLICATION_ID=APPLICATION_ID, INSTANCE_PATH=str(tmp_path))
    auto = AutoWebhooks(settings, say=said)
    auto.start()
    auto.stop()
    assert said.lines == [
        "warning: AUTO_WEBHOOKS=ngrok: VONAGE_API_KEY is not set; copy it from API settings in the Vonage dashboard; "
        "serving without pointing the application"
    ]
    assert auto.thread is None


def test_auto_webhooks_points_when_the_tunnel_starts_later_and_restores(ngrok, vonage, account_env, tmp_path):
    settings = settings_with(ngrok.url, VONAGE_API_HOST=vonage.host, INSTANCE_PATH=str(tmp_path), **account_env)
    said = Said()
    auto = AutoWebhooks(settings, say=said, poll_seconds=0.05)
    auto.start()
    try:
        assert said.lines[0].startswith("warning: AUTO_WEBHOOKS=ngrok: ngrok runs but has no https tunnel")
        assert vonage.requests == []
        ngrok.serve(tunnel("https://late.ngrok-free.app", "http://localhost:3000"))
        vonage.wait_for_webhooks(webhooks_at("https://late.ngrok-free.app"))
    finally:
        auto.stop()
    assert vonage.document["capabilities"]["voice"]["webhooks"] == ORIGINAL_WEBHOOKS
    assert not (tmp_path / f"webhooks-backup-{APPLICATION_ID}.json").exists()


def test_auto_webhooks_leave_an_application_changed_meanwhile_as_it_is(ngrok, vonage, account_env, tmp_path):
    ngrok.serve(tunnel("https://abc.ngrok-free.app", "http://localhost:3000"))
    settings = settings_with(ngrok.url, VONAGE_API_HOST=vonage.host, INSTANCE_PATH=str(tmp_path), **account_env)
    said = Said()
    auto = AutoWebhooks(settings, say=said, poll_seconds=3600)
    auto.start()
    someone_elses = {"answer_url": {"address": "https://elsewhere.example/answer", "http_method": "GET"}}
    vonage.document["capabilities"]["voice"]["webhooks"] = someone_elses
    auto.stop()
    assert vonage.document["capabilities"]["voice"]["webhooks"] == someone_elses
    assert len(vonage.puts()) == 1
    assert "no longer points at https://abc.ngrok-free.app (changed meanwhile)" in said.lines[-1]


def test_auto_webhooks_keep_their_record_in_the_instance_folder(ngrok, vonage, account_env, tmp_path):
    ngrok.serve(tunnel("https://abc.ngrok-free.app", "http://localhost:3000"))
    instance = tmp_path / "instance-path"
    settings = settings_with(ngrok.url, VONAGE_API_HOST=vonage.host, INSTANCE_PATH=str(instance), **account_env)
    auto = AutoWebhooks(settings, say=Said(), poll_seconds=3600)
    auto.start()
    try:
        record = json.loads((instance / f"webhooks-backup-{APPLICATION_ID}.json").read_text())
        assert record["webhooks"] == {**ORIGINAL_WEBHOOKS, "fallback_answer_url": None}
    finally:
        auto.stop()
    assert list(instance.iterdir()) == []


# --- `make run` with AUTO_WEBHOOKS=ngrok, end to end --------------------------------------------------------------


def start_make_run(port: int, env: dict, log_path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(SERVE, cwd=CHILD_FOLDER, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_until_listening(port, process)
    return process


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_make_run_points_the_application_follows_the_tunnel_and_puts_it_back(stop_signal, ngrok, certificate, tmp_path):
    application_id = str(uuid.uuid4())
    stand_in = ApplicationStandIn(application(application_id))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    vonage = vonage_https_stand_in(stand_in, context)
    port = free_port()
    ngrok.serve(tunnel("https://first.ngrok-free.app", f"http://localhost:{port}"))
    record = tmp_path / "instance" / f"webhooks-backup-{application_id}.json"
    env = run_env(
        INSTANCE_PATH=str(tmp_path / "instance"),
        PORT=str(port),
        WORKERS="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'calls.db'}",
        AUTO_WEBHOOKS="ngrok",
        NGROK_API_URL=ngrok.url,
        VONAGE_APPLICATION_ID=application_id,
        VONAGE_API_KEY="abcd1234",
        VONAGE_API_SECRET="s3cret-api",
        VONAGE_API_HOST=f"127.0.0.1:{vonage.port}",
        REQUESTS_CA_BUNDLE=str(certificate[0]),
        NO_PROXY="127.0.0.1,localhost",
    )
    process = start_make_run(port, env, tmp_path / "serve.log")
    try:
        stand_in.wait_for_webhooks(webhooks_at("https://first.ngrok-free.app"))
        assert json.loads(record.read_text())["webhooks"] == {**ORIGINAL_WEBHOOKS, "fallback_answer_url": None}
        assert record.stat().st_mode & 0o777 == 0o600
        ngrok.serve(tunnel("https://second.ngrok-free.app", f"http://localhost:{port}"))
        stand_in.wait_for_webhooks(webhooks_at("https://second.ngrok-free.app"))
        process.send_signal(stop_signal)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        vonage.close()
        record.unlink(missing_ok=True)
    log = (tmp_path / "serve.log").read_text()
    assert "  answer URL   https://first.ngrok-free.app/voice/answer   (GET)" in log
    assert "AUTO_WEBHOOKS=ngrok: put the application's earlier voice webhooks back:" in log
    assert [method for method, _ in stand_in.requests] == ["GET", "PUT", "GET", "PUT", "GET", "PUT"]
    puts = stand_in.puts()
    assert [body["capabilities"]["voice"]["webhooks"] for body in puts] == [
        webhooks_at("https://first.ngrok-free.app"),
        webhooks_at("https://second.ngrok-free.app"),
        ORIGINAL_WEBHOOKS,
    ]
    assert all(all_but_webhooks(body) == all_but_webhooks(application(application_id)) for body in puts)
    assert not record.exists()
