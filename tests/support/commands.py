"""`flask` commands run as a user runs them: `python -m flask` in a project folder of its own, pointed at a stand-in
of Vonage's APIs over HTTPS (support.vonage_standin), with none of a developer's settings."""

import subprocess
import sys

from conftest import ROOT
from support.servers import free_port, run_env
from support.vonage_standin import API_KEY, API_SECRET

PUBLIC_URL = "https://abc123.ngrok.app"


PUBLIC_URL = "https://abc123.ngrok.app"


def flask(project, vonage, certificate, *args: str, umask: int = 0o022, **env: str) -> subprocess.CompletedProcess:
    kept = {
        name: value
        for name, value in run_env().items()
        if not name.startswith(("VONAGE_", "FLASK_")) and name.lower() not in ("https_proxy", "http_proxy", "all_proxy")
    }
    kept.pop("LOG_FORMAT", None)
    kept.pop("PUBLIC_URL", None)
    environment = {
        **kept,
        "PYTHONPATH": str(ROOT),
        "FLASK_APP": "app",
        "DATABASE_URL": f"sqlite:///{project}/calls.db",
        "INSTANCE_PATH": str(project / "instance"),
        # Nothing listens here: a developer's running ngrok agent is never asked.
        "NGROK_API_URL": f"http://127.0.0.1:{free_port()}",
        "VONAGE_API_KEY": API_KEY,
        "VONAGE_API_SECRET": API_SECRET,
        "PUBLIC_URL": PUBLIC_URL,
        "VONAGE_API_HOST": vonage.host,
        "VONAGE_REST_HOST": vonage.host,
        "VONAGE_TIMEOUT": "10",
        "REQUESTS_CA_BUNDLE": str(certificate[0]),
        "NO_PROXY": "127.0.0.1,localhost",
        **env,
    }
    environment = {name: value for name, value in environment.items() if value is not None}
    command = [sys.executable, "-m", "flask", *args]
    return subprocess.run(
        command, cwd=project, env=environment, capture_output=True, text=True, timeout=90, umask=umask
    )


def assert_one_error_line(result, *says: str, exit_code: int | None = None) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode != 0, output
    if exit_code is not None:
        assert result.returncode == exit_code, output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: "), line
    for text in says:
        assert text in line, line
    return line
