"""Shared fixtures: the app built from explicit settings, its test client and CLI runner, and payloads."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402

CALL_LOG_TOKEN = "test-call-log-token-0123456789"
SEED_EVENTS = sorted((FIXTURES / "seed").glob("*.json"))
STATUS_EVENTS = sorted((FIXTURES / "events").glob("*.json"))


def load_fixture(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def settings_env():
    """The environment the app under test sees; tests add to it before using `app`."""
    return {}


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'calls.db'}"


@pytest.fixture
def app(settings_env, database_url):
    return create_app({"DATABASE_URL": database_url, "CALL_LOG_TOKEN": CALL_LOG_TOKEN, **settings_env})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
