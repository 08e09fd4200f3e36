"""Shared fixtures: the app built from explicit settings, its test client and CLI runner, and payloads.

The app's call log writes as the production server's does: over a socket to a call-log writer (here a thread
the app starts), which commits with the one committer.
"""

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from app import close_app, create_app
from calllog.queries import CallLogReader
from calllog.schema import Database
from config import settings_from
from support import keys
from support.vonage_standin import VonageStandIn, make_certificate

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CALL_LOG_TOKEN = "test-call-log-token-0123456789"
SEED_EVENTS = sorted((FIXTURES / "seed").glob("*.json"))
STATUS_EVENTS = sorted((FIXTURES / "events").glob("*.json"))
# The instance folder of every app and server the tests start without one of their own, so that no test writes
# a call-log token (or anything else) into the repository's instance/.
SCRATCH_INSTANCE = Path(tempfile.mkdtemp(prefix="calls-test-instance-"))


@pytest.fixture(autouse=True, scope="session")
def no_settings_from_this_shell():
    """None of the server's settings a developer exported in this shell reaches the tests run in this process
    (a test that needs one sets it); the processes they start get the same (support.servers.run_env)."""
    from support.servers import SETTINGS_VARIABLES

    exported = {name: os.environ.pop(name) for name in list(os.environ) if name in SETTINGS_VARIABLES}
    yield
    os.environ.update(exported)


def load_fixture(path: Path) -> dict:
    return json.loads(path.read_text())


def answer_record(conversation: str | None, received_at: str, verified: bool = True) -> dict:
    """An answers row as a worker sends it to the writer: Alice's call to 447700900000, connected."""
    return {
        "conversation_uuid": conversation,
        "leg_uuid": None,
        "route": "answer",
        "caller": "Alice",
        "requested": "447700900000",
        "callee": "447700900000",
        "connected": True,
        "reason": None,
        "received_at": received_at,
        "verified": verified,
    }


@contextlib.contextmanager
def call_log_reader(database_url: str):
    """Queries over a database, as a second process would read it; its connections closed afterwards."""
    database = Database(database_url)
    try:
        yield CallLogReader(database)
    finally:
        database.close()


@contextlib.contextmanager
def built_app(config: dict, writer_socket: str | None = None):
    """An app built from `config` (and the writer at `writer_socket`, as serve.py hands its workers), its call log
    closed afterwards."""
    settings = replace(settings_from({"INSTANCE_PATH": str(SCRATCH_INSTANCE), **config}), writer_socket=writer_socket)
    application = create_app(settings=settings)
    try:
        yield application
    finally:
        close_app(application)


@pytest.fixture
def settings_env():
    """The environment the app under test sees; tests add to it before using `app`."""
    return {}


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'calls.db'}"


@pytest.fixture
def app(settings_env, database_url, tmp_path):
    # What commands keep (flask webhooks' record of the application's settings) stays with the test.
    config = {
        "DATABASE_URL": database_url,
        "CALL_LOG_TOKEN": CALL_LOG_TOKEN,
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }
    with built_app({**config, **settings_env}) as application:
        yield application


@pytest.fixture
def call_log(app):
    return app.extensions["call_log"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def pytest_sessionfinish(session, exitstatus):
    """In CI nothing may be skipped: a skip there would hide a service .ci/run failed to provide."""
    shutil.rmtree(SCRATCH_INSTANCE, ignore_errors=True)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} tests were skipped; in CI every test must run", red=True)
        session.exitstatus = 1


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of the test's own, which it may stop, hang and start again."""
    from support.pg import ThrowawayPostgres, postgres_binaries  # here, not at the top: pg imports this module

    postgres = ThrowawayPostgres(postgres_binaries())
    try:
        postgres.create()
        yield postgres
    finally:
        postgres.destroy()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost, for the HTTPS stand-ins: (certificate file, key)."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def vonage(certificate):
    """Vonage's REST APIs over HTTPS on loopback, taking the application's JWTs (signed with support.keys' key)."""
    stand_in = VonageStandIn(certificate, application_key=keys.rsa_key().public_key())
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="session")
def private_key_file(tmp_path_factory):
    """The application's private key (support.keys') in a file, as VONAGE_PRIVATE_KEY names one."""
    path = tmp_path_factory.mktemp("application-key") / "private.key"
    path.write_bytes(keys.pkcs8())
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def media(certificate):
    """Vonage's media host over HTTPS on loopback (support.media_standin), serving recordings to the application's
    JWT (signed with support.keys' key); one a module."""
    from support.media_standin import MediaStandIn

    stand_in = MediaStandIn(certificate, keys.rsa_key().public_key())
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="module")
def issuer():
    """An OpenID issuer of the tests' own on loopback (support.oidc_issuer), one a module: its keys and whether it
    answers are that module's to change."""
    from support.oidc_issuer import OidcIssuer  # PyJWT: loaded only by the modules that log users in

    started = OidcIssuer()
    yield started
    started.close()


@pytest.fixture
def project(tmp_path):
    """A project folder of a user's own, holding the application's private key."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "private.key").write_bytes(keys.pkcs8())
    return folder
