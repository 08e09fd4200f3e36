"""The call-log token: CALL_LOG_TOKEN when set, else one made once and kept (0600) in the instance folder."""

import secrets
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


def test_processes_starting_together_agree_on_one_token(tmp_path, monkeypatch):
    # The worst moment, made certain: each of them has found no token file and is making its own token before
    # any of them writes one.
    all_found_none = threading.Barrier(8, timeout=10)
    make_token = secrets.token_urlsafe

    def token_once_all_found_none(size):
        all_found_none.wait()
        return make_token(size)

    monkeypatch.setattr(secrets, "token_urlsafe", token_once_all_found_none)
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: call_log_token(settings(tmp_path)), range(8)))
    assert tokens == {(tmp_path / TOKEN_FILE).read_text().strip()}
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
    from support.servers import run_server

    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
        "INSTANCE_PATH": str(tmp_path),
        "CALL_LOG_TOKEN": "",
    }
    tokens = []
    for _ in range(2):
        with run_server(**settings) as url:
            tokens.append((tmp_path / TOKEN_FILE).read_text().strip())
            # The link printed at the first start still opens the log after the restart.
            headers = {"Authorization": f"Bearer {tokens[0]}"}
            assert requests.get(f"{url}/api/calls", headers=headers, timeout=10).status_code == 200
    assert tokens[0] == tokens[1]
