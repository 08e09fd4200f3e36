"""Every `flask` command's errors, as a user sees them: one line saying what is wrong, a non-zero exit, and
never a traceback. Each runs `python -m flask` in a subprocess, as a user does."""

import re
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from click.shell_completion import BashComplete
from flask.cli import ScriptInfo, cli

from conftest import ROOT
from support import keys
from support.servers import free_port, run_env

# Signed, so that `flask sign` does not also warn that the request is unsigned.
SECRET = {"VONAGE_SIGNATURE_SECRET": "s" * 32}
STATUSES_LISTED = "'in_progress', 'refused', 'started', 'ringing', 'answered', 'disconnected', 'completed', 'busy'"


def flask(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m flask ARGS` from an empty folder (no .env is read), with no Vonage credentials set; the app is
    found through FLASK_APP, as the project's .flaskenv does, so that `flask` alone is `flask` alone."""
    kept = {name: value for name, value in run_env().items() if not name.startswith(("VONAGE_", "FLASK_"))}
    kept.pop("INSTANCE_PATH", None)
    environment = {**kept, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp_path}/calls.db", **env}
    environment["FLASK_APP"] = "app"
    # The generated call-log token is kept in the test's folder, not the project's instance/.
    environment.setdefault("INSTANCE_PATH", str(tmp_path / "instance"))
    command = [sys.executable, "-m", "flask", *args]
    return subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)


# (arguments, environment, exit code, where the error line is, what it says)
BAD_INPUT = {
    "calls-limit-0": (["calls", "--limit", "0"], {}, 2, "stderr", "error: invalid value for '--limit': 0 is not in"),
    "calls-limit-negative": (["calls", "--limit", "-5"], {}, 2, "stderr", "'--limit': -5 is not in the range"),
    "calls-limit-huge": (["calls", "--limit", "9" * 30], {}, 2, "stderr", "is not in the range 1<=x<=10000"),
    "calls-limit-text": (["calls", "--limit", "ten"], {}, 2, "stderr", "'--limit': 'ten' is not a valid integer"),
    "calls-status-bogus": (["calls", "--status", "bogus"], {}, 2, "stderr", f"'bogus' is not one of {STATUSES_LISTED}"),
    "calls-unknown-option": (["calls", "--bogus"], {}, 2, "stderr", "no such option '--bogus'; see 'python -m flask"),
    "ncco-no-number": (
        ["ncco"],
        {},
        2,
        "stderr",
        "error: missing argument 'NUMBER'; see 'python -m flask ncco --help'",
    ),
    "ncco-premium-number": (["ncco", "+44 909 879 0000"], {}, 1, "stdout", "refused: 449098790000 is a PREMIUM_RATE"),
    "ncco-garbage": (["ncco", "#!?"], {}, 1, "stdout", "refused: "),
    "simulate-no-server": (["simulate", "--url", "http://127.0.0.1:{port}"], {}, 1, "stdout", "PROBLEM cannot reach"),
    "simulate-bad-url": (["simulate", "--url", "localhost"], {}, 2, "stderr", "'localhost' is not a base URL"),
    "simulate-nan-timeout": (
        ["simulate", "--answer-timeout", "nan"],
        {},
        2,
        "stderr",
        "nan is not a number of seconds",
    ),
    "call-no-credentials": (["call", "447700900000"], {}, 2, "stderr", "error: VONAGE_APPLICATION_ID is not set"),
    "token-no-credentials": (["token", "Alice"], {}, 2, "stderr", "error: VONAGE_APPLICATION_ID is not set"),
    "webhooks-no-credentials": (["webhooks", "--show"], {}, 2, "stderr", "error: VONAGE_APPLICATION_ID is not set"),
    "setup-no-credentials": (["setup"], {}, 2, "stderr", "error: VONAGE_API_KEY is not set"),
    "setup-bad-number": (
        ["setup", "--number", "Bob"],
        {"VONAGE_API_KEY": "k", "VONAGE_API_SECRET": "s", "PUBLIC_URL": "https://a.example"},
        2,
        "stderr",
        "error: --number: 'Bob' is not a phone number",
    ),
    "sign-bad-field": (
        ["sign", "/voice/answer", "--field", "to"],
        SECRET,
        2,
        "stderr",
        "error: --field 'to' is not key=value",
    ),
    "sign-bad-url": (["sign", "/voice/answer", "--url", "notaurl", "--run"], SECRET, 2, "stderr", "'notaurl' is not a"),
    "settings-extra-argument": (["settings", "extra"], {}, 2, "stderr", "error: got unexpected extra argument (extra)"),
    "settings-bad-setting": (
        ["settings"],
        {"LOG_FORMAT": "xml"},
        2,
        "stderr",
        "error: LOG_FORMAT: 'xml' is not one of",
    ),
    "settings-short-signature-secret": (
        ["settings"],
        {"VONAGE_SIGNATURE_SECRET": "too-short"},
        2,
        "stderr",
        "error: VONAGE_SIGNATURE_SECRET: it is 9 characters long, and an HMAC key that short is guessable",
    ),
    "prune-no-age": (["prune"], {}, 2, "stderr", "error: no age to prune: give --older-than 30d, or set"),
    "prune-bad-age": (["prune", "--older-than", "soon"], {}, 2, "stderr", "error: --older-than: 'soon' is not an age"),
    "prune-bad-setting": (["prune"], {"CALL_LOG_RETENTION": "0d"}, 2, "stderr", "error: CALL_LOG_RETENTION: '0d'"),
    "calls-bad-setting": (["calls"], {"RING_TIMEOUT": "0"}, 2, "stderr", "error: RING_TIMEOUT: 0 is outside 1-120"),
    # Flask builds the app to list its commands: a bad setting is named there too, and not followed by a help
    # that would lack every command of the project.
    "help-bad-setting": (["--help"], {"LOG_FORMAT": "xml"}, 2, "stderr", "error: LOG_FORMAT: 'xml' is not one of"),
    "nothing-bad-setting": ([], {"LOG_FORMAT": "xml"}, 2, "stderr", "error: LOG_FORMAT: 'xml' is not one of"),
    "unknown-command-help-bad-setting": (
        ["nosuchcommand", "--help"],
        {"LOG_FORMAT": "xml"},
        2,
        "stderr",
        "error: LOG_FORMAT: 'xml' is not one of",
    ),
    "unknown-command": (
        ["nosuchcommand"],
        {},
        2,
        "stderr",
        "error: no such command 'nosuchcommand'; see 'python -m flask --help'",
    ),
    "unknown-command-help": (["nosuchcommand", "--help"], {}, 2, "stderr", "error: no such command 'nosuchcommand';"),
    "misspelt-command": (
        ["setings"],
        {},
        2,
        "stderr",
        "error: no such command 'setings' (did you mean 'settings'?); see 'python -m flask --help'",
    ),
    "misspelt-flask-command": (["rutes"], {}, 2, "stderr", "no such command 'rutes' (did you mean 'routes'?)"),
}


@pytest.mark.parametrize("case", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_a_command_given_bad_input_says_so_in_one_line_and_exits_non_zero(tmp_path, case):
    args, env, exit_code, stream, says = case
    result = flask(tmp_path, *(arg.format(port=free_port()) for arg in args), **env)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == exit_code, output
    # At most one line on standard error: the error itself (for ncco and simulate, their report is on stdout).
    assert len(result.stderr.splitlines()) == (1 if stream == "stderr" else 0), output
    (line,) = [line for line in getattr(result, stream).splitlines() if says in line]
    assert line.startswith(("error: ", "refused: ", "PROBLEM ")), line


KEY_COMMANDS = {"token": ["token", "Alice"], "call": ["call", "447700900000"], "settings": ["settings"]}
BAD_KEYS = ["cut-in-half", "modulus-changed", "public-key", "encrypted-pkcs8", "ec-pkcs8", "garbage", "empty"]


@pytest.mark.parametrize("key", [*BAD_KEYS, "missing"])
@pytest.mark.parametrize("command", KEY_COMMANDS.values(), ids=KEY_COMMANDS.keys())
def test_a_bad_private_key_is_one_line_and_exit_2_never_a_traceback(tmp_path, command, key):
    if key != "missing":
        (tmp_path / "private.key").write_bytes(keys.bad_variants()[key][0])
    result = flask(
        tmp_path,
        *command,
        VONAGE_APPLICATION_ID="aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        VONAGE_PRIVATE_KEY="./private.key",
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: VONAGE_PRIVATE_KEY: ") and "application's page in the Vonage dashboard" in line


def test_flask_token_signs_with_a_pkcs1_key(tmp_path):
    (tmp_path / "private.key").write_bytes(keys.pkcs1())
    result = flask(
        tmp_path,
        "token",
        "Alice",
        VONAGE_APPLICATION_ID="aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        VONAGE_PRIVATE_KEY="./private.key",
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), keys.rsa_key().public_key(), algorithms=["RS256"])
    assert claims["sub"] == "Alice"


def test_an_unusable_call_log_token_file_is_one_line_even_for_help(tmp_path):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "call_log_token").write_text("short\n")
    result = flask(tmp_path, "--help")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: CALL_LOG_TOKEN is unset and ") and len(result.stderr.splitlines()) == 1


def test_help_with_good_settings_lists_the_project_commands(tmp_path):
    result = flask(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert {"calls", "settings", "webhooks", "routes"} <= set(re.findall(r"^  (\w+) ", result.stdout, re.MULTILINE))


def test_completing_after_an_unknown_command_offers_nothing_instead_of_failing(app):
    completion = BashComplete(cli, {"obj": ScriptInfo(create_app=lambda: app)}, "flask", "_FLASK_COMPLETE")
    assert completion.get_completions(["nosuchcommand"], "--l") == []
    assert [item.value for item in completion.get_completions(["calls"], "--l")] == ["--limit"]


FLASK_ALONE = ("flask", "werkzeug", "click", "jinja2", "itsdangerous", "markupsafe", "blinker")


@pytest.fixture(scope="module")
def python_with_flask_alone(tmp_path_factory):
    """A Python with Flask and nothing else of the server's, as a shell without the .venv activated has when Flask
    is installed for the system or the user: a bare venv, and Flask's own packages from .venv on its path."""
    folder = tmp_path_factory.mktemp("other-python")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True, timeout=60)
    packages = folder / "packages"
    packages.mkdir()
    site = next(p for p in sys.path if p.endswith("site-packages") and (Path(p) / "flask").is_dir())
    for name in FLASK_ALONE:
        (packages / name).symlink_to(Path(site) / name)
    return folder / "venv" / "bin" / "python", packages


@pytest.mark.parametrize("command", [["-m", "flask", "calls"], ["-m", "flask", "simulate"], [str(ROOT / "serve.py")]])
def test_a_command_run_by_another_python_says_so_in_one_line_with_the_fix(python_with_flask_alone, command, tmp_path):
    python, packages = python_with_flask_alone
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{packages}", "FLASK_APP": "app"}
    result = subprocess.run(
        [str(python), *command], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in result.stderr and "No such command" not in result.stderr, result.stderr
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: this shell's Python ({python}) lacks the server's packages (sqlalchemy, ")
    assert line.endswith(
        "run `source .venv/bin/activate` in this shell first (or call .venv/bin/flask, .venv/bin/python)"
    )


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_flask_calls_with_the_database_unreadable_is_one_error_line_naming_database_url(tmp_path, as_json):
    """Its standard output is the table or the JSON a script reads: nothing else is written there, and the
    server's log line about the database goes nowhere near it."""
    result = flask(tmp_path, "calls", *as_json, DATABASE_URL="sqlite:////proc/calls.db")
    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: the call log is unavailable: ") and line.endswith("; check DATABASE_URL")


def test_flask_settings_names_each_variable_and_where_its_value_came_from(tmp_path):
    (tmp_path / ".env").write_text("INBOUND_ROUTES=447700900001=Alice\nGREETING=From the file.\n")
    result = flask(tmp_path, "settings", GREETING="From the shell.")
    assert result.returncode == 0, result.stderr
    shown = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert shown["GREETING"].endswith("From the shell.  [environment]")
    assert shown["INBOUND_ROUTES"].endswith("447700900001=Alice  [.env]")
    assert shown["VONAGE_NUMBER"].endswith("(not set)  [default]")
    token_file = tmp_path / "instance" / "call_log_token"
    assert shown["CALL_LOG_TOKEN"].endswith(f"(set)  [generated, kept in {token_file}]")
    assert token_file.read_text().strip() not in result.stdout
    assert "signature_secrets" not in result.stdout and "writer_socket" not in result.stdout
