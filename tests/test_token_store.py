"""The call-log token: CALL_LOG_TOKEN when set, else one made once and kept (0600) in the instance folder."""

import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from calllog.token_store import TOKEN_FILE, call_log_token
from config import ConfigError, settings_from
from conftest import CALL_LOG_TOKEN, built_app


def settings(folder, **more):
    return settings_from({"INSTANCE_PATH": str(folder), **more})


def test_the_generated_token_survives_a_restart(tmp_path):
    config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}", "INSTANCE_PATH": str(tmp_path / "instance")}
    with built_app(config) as first:
        token = first.config["CALL_LOG_TOKEN"]
    with built_app(config) as second:
        assert second.config["CALL_LOG_TOKEN"] == token
    assert (tmp_path / "instance" / TOKEN_FILE).read_text().strip() == token


def test_the_token_file_is_readable_by_its_owner_only(tmp_path):
    call_log_token(settings(tmp_path))
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600


def test_call_log_token_setting_wins_and_writes_nothing(tmp_path):
    (tmp_path / TOKEN_FILE).write_text("stored-token-0123456789\n")
    assert call_log_token(settings(tmp_path, CALL_LOG_TOKEN=CALL_LOG_TOKEN)) == CALL_LOG_TOKEN
    assert call_log_token(settings(tmp_path / "empty", CALL_LOG_TOKEN=CALL_LOG_TOKEN)) == CALL_LOG_TOKEN
    assert not (tmp_path / "empty").exists()


def test_processes_starting_together_agree_on_one_token(tmp_path):
    starts = threading.Barrier(8)

    def start(_):
        starts.wait()
        return call_log_token(settings(tmp_path))

    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(start, range(8)))
    assert len(tokens) == 1
    assert [path.name for path in tmp_path.iterdir()] == [TOKEN_FILE]


@pytest.mark.parametrize("content", ["", "short\n", "has a space in it somewhere\n"])
def test_a_corrupt_token_file_is_refused_in_one_line_saying_to_delete_it(tmp_path, content):
    (tmp_path / TOKEN_FILE).write_text(content)
    with pytest.raises(ConfigError) as refused:
        call_log_token(settings(tmp_path))
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path / TOKEN_FILE) in message and "delete it" in message


def test_an_unreadable_token_file_is_refused_in_one_line(tmp_path):
    (tmp_path / TOKEN_FILE).mkdir()
    with pytest.raises(ConfigError, match=r"cannot be read .*set CALL_LOG_TOKEN"):
        call_log_token(settings(tmp_path))


def test_the_server_keeps_its_generated_token_across_a_restart(tmp_path):
    from test_serve import run_server

    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
        "INSTANCE_PATH": str(tmp_path),
        "CALL_LOG_TOKEN": "",
    }
    for _ in range(2):
        with run_server(**settings) as url:
            token = (tmp_path / TOKEN_FILE).read_text().strip()
            response = requests.get(f"{url}/api/calls", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert response.status_code == 200
    assert (tmp_path / TOKEN_FILE).read_text().strip() == token
