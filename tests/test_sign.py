"""`flask sign`: the curl command it prints, run by a real shell against the production server with signatures on,
is accepted; the same request changed after signing is refused."""

import os
import shutil
import subprocess
import sys

import pytest

from support.servers import CHILD_FOLDER, run_env, run_server

SECRET = "sig-secret-0123456789abcdef0123456789abcdef"
CALLEE = "447700900000"
# Quotes, spaces, & and $ in the payload: the command line must carry them through the shell unchanged.
EVENT = '{"status": "started", "uuid": "63f61863-4a51", "from": "O\'Brien & Sons $HOME", "to": "447700900000"}'

if not (shutil.which("bash") and shutil.which("curl")):
    pytest.skip("flask sign's tests run its curl command in bash: install bash and curl", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    database = tmp_path_factory.mktemp("sign") / "calls.db"
    # AUTO_WEBHOOKS blank: a developer's .env must not make this test server repoint their real application.
    with run_server(VONAGE_SIGNATURE_SECRET=SECRET, DATABASE_URL=f"sqlite:///{database}", AUTO_WEBHOOKS="") as url:
        yield url


@pytest.fixture
def settings_env():
    return {"VONAGE_SIGNATURE_SECRET": SECRET}


def shell(script: str, **env) -> subprocess.CompletedProcess:
    """`script` run by bash, with the virtual environment's `flask` on the PATH and the project's app."""
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-c", script],
        cwd=CHILD_FOLDER,
        env=run_env(PATH=path, FLASK_APP="app", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def status_of(curl_output: str) -> int:
    """The status code in `curl -i` output's first line."""
    return int(curl_output.split("\r\n", 1)[0].split()[1])


def signed_command(runner, *args: str) -> str:
    result = runner.invoke(args=["sign", *args])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1, result.stdout
    return result.stdout.strip()


def test_eval_of_flask_sign_gets_the_signed_event_accepted(server, tmp_path):
    database = f"sqlite:///{tmp_path / 'calls.db'}"
    result = shell(
        'eval "$(flask sign /voice/event --json "$EVENT" --url "$SERVER")"',
        EVENT=EVENT,
        SERVER=server,
        VONAGE_SIGNATURE_SECRET=SECRET,
        DATABASE_URL=database,
    )
    assert result.returncode == 0, result.stderr
    assert status_of(result.stdout) == 204


@pytest.mark.parametrize(
    "args, expected, tamper",
    [
        (["/voice/event", "--json", EVENT], 204, ('"started"', '"answered"')),
        (["/voice/answer", "--field", f"to={CALLEE}", "--field", "from_user=O'Brien $HOME"], 200, ("to=4", "to=3")),
        (
            ["/voice/answer", "--method", "POST", "--field", f"to={CALLEE}", "--field", "from_user=Al"],
            200,
            ("from_user=Al", "from_user=Eve"),
        ),
    ],
    ids=["json", "query", "form"],
)
def test_the_printed_command_is_accepted_and_refused_once_changed(server, runner, args, expected, tamper):
    command = signed_command(runner, *args, "--url", server)
    accepted = shell('eval "$COMMAND"', COMMAND=command)
    assert status_of(accepted.stdout) == expected, accepted.stdout + accepted.stderr

    changed = command.replace(*tamper)
    assert changed != command
    refused = shell('eval "$COMMAND"', COMMAND=changed)
    assert status_of(refused.stdout) == 401
    assert "payload_hash does not match" in refused.stdout


@pytest.mark.parametrize("settings_env", [{}])
def test_without_a_secret_the_command_has_no_authorization_and_a_warning_goes_to_stderr(runner, server):
    result = runner.invoke(args=["sign", "/voice/answer", "--field", f"to={CALLEE}", "--url", server])
    assert result.stdout == f"curl -sS -i '{server}/voice/answer?to={CALLEE}'\n"
    assert result.stderr == "warning: VONAGE_SIGNATURE_SECRET is not set, so the request is not signed\n"
    assert status_of(shell(result.stdout).stdout) == 503


def test_run_sends_the_request_and_prints_the_status_and_body(runner, server):
    result = runner.invoke(args=["sign", "/voice/answer", "--field", f"to={CALLEE}", "--url", server, "--run"])
    assert result.exit_code == 0, result.output
    status, body = result.stdout.split("\n", 1)
    assert status == "200 OK"
    assert f'"number":"{CALLEE}"' in body


@pytest.mark.parametrize(
    "args, message",
    [
        (["--field", "to"], "error: --field 'to' is not key=value; for example --field to=447700900000\n"),
        (
            ["--json", "{}", "--method", "GET"],
            "error: --json is a POST body on its own; leave out --field and --method GET\n",
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(args=["sign", "/voice/answer", *args])
    assert result.exit_code == 2
    assert result.output == message
