"""`flask users` (list, create, delete, sync) run as a user runs them, and CLIENT_CREATE_USERS on the production
server, against the stand-in of Vonage's Users API over HTTPS on loopback (tests/vonage_standin.py): the SDK's own
client makes every request, signed with the application's key, and Vonage's error answers are one line each."""

from __future__ import annotations

import pytest
import requests

from support import keys
from support.commands import assert_one_error_line, flask
from support.pg import database_url_for
from support.production import wait_until
from support.servers import run_server
from support.vonage_standin import RATE_LIMIT_RETRY_AFTER

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
CLIENT_AUTH_KEY = "a-backend-key-that-is-long-enough-0123456789"


@pytest.fixture
def users(project, vonage, certificate):
    """Runs `flask users ARGS` in the project, as the application."""

    def run(*args: str, **env: str):
        settings = {"VONAGE_APPLICATION_ID": APPLICATION_ID, "VONAGE_PRIVATE_KEY": str(project / "private.key")}
        return flask(project, vonage, certificate, "users", *args, **{**settings, **env})

    return run


def ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


# --- list, create, delete ---


def test_users_lists_every_user_page_after_page(users, vonage):
    for index in range(130):  # more than one page of 100
        vonage.add_user(f"user{index:03d}", display_name="Someone" if index == 7 else None)
    listed = ok(users()).splitlines()
    assert listed[0].split() == ["NAME", "ID", "DISPLAY", "NAME", "LAST", "TOKEN", "HERE"]
    assert len(listed) == 131
    (seventh,) = [line for line in listed if line.startswith("user007 ")]
    assert "Someone" in seventh and "USR-" in seventh
    assert len(vonage.requests_to("GET", "/v1/users")) == 2


def test_users_with_none_says_how_to_make_them(users):
    assert "flask users create NAME" in ok(users())


def test_create_makes_the_user_with_its_display_name(users, vonage):
    assert "created Alice (USR-" in ok(users("create", "Alice", "--display-name", "Alice Smith"))
    (created,) = vonage.requests_to("POST", "/v1/users")
    assert created.body == {"name": "Alice", "display_name": "Alice Smith"}
    assert vonage.user_names() == ["Alice"]


def test_create_of_a_name_vonage_has_is_one_line_409(users, vonage):
    vonage.add_user("Alice")
    assert_one_error_line(users("create", "Alice"), "already has a user named 'Alice'", "409", exit_code=8)


def test_create_of_a_name_no_route_could_use_is_refused_before_vonage_is_asked(users, vonage):
    assert_one_error_line(users("create", "447700900001"), "phone number", exit_code=2)
    assert vonage.writes() == []


def test_delete_removes_the_user_named(users, vonage):
    alice = vonage.add_user("Alice")
    vonage.add_user("Bob")
    assert f"deleted Alice ({alice['id']})" in ok(users("delete", "Alice"))
    assert vonage.user_names() == ["Bob"]


def test_delete_of_a_user_vonage_does_not_have_is_one_line(users, vonage):
    assert_one_error_line(users("delete", "Ghost"), "no user named 'Ghost'", exit_code=5)


def test_delete_of_a_user_gone_meanwhile_is_vonages_404_in_one_line(users, vonage):
    alice = vonage.add_user("Alice")
    vonage.fail("404", f"/v1/users/{alice['id']}")
    assert_one_error_line(users("delete", "Alice"), "no user named 'Alice' (404)", exit_code=5)


def test_a_key_that_is_not_the_applications_is_vonages_401_in_one_line(users, project):
    (project / "other.key").write_bytes(keys.pkcs8(keys.rsa_key(3072)))
    result = users(VONAGE_PRIVATE_KEY=str(project / "other.key"))
    assert_one_error_line(result, "refused the credentials (401)", exit_code=4)


def test_rate_limiting_is_one_line_with_vonages_wait(users, vonage):
    vonage.fail("429")
    assert_one_error_line(users(), "rate limiting", f"try again in {RATE_LIMIT_RETRY_AFTER} s", exit_code=6)


def test_vonage_failing_is_one_line(users, vonage):
    vonage.fail("500")
    assert_one_error_line(users("create", "Alice"), "server error (500)", exit_code=7)


def test_a_wrong_option_is_one_line(users):
    assert_one_error_line(users("create"), "missing argument", "flask users create --help", exit_code=2)


# --- sync ---

ROUTING = {
    "INBOUND_ROUTES": "447700900001=Alice,447700900002=Bob",
    "INBOUND_DEFAULT_USER": "Carol",
    "CALLABLE_USERS": "Alice,Dave",
}


def test_sync_creates_the_users_the_routes_name_and_lists_the_others(users, vonage):
    vonage.add_user("Bob")
    vonage.add_user("Old")
    out = ok(users("sync", **ROUTING))
    assert vonage.user_names() == ["Alice", "Bob", "Carol", "Dave", "Old"]
    assert "exists        Bob" in out and "created       Alice" in out and "created       Dave" in out
    assert "not routed    Old" in out and "kept" in out
    assert len(vonage.requests_to("POST", "/v1/users")) == 3
    assert vonage.requests_to("DELETE", f"/v1/users/{next(iter(vonage.users))}") == []


def test_sync_dry_run_creates_nothing(users, vonage):
    out = ok(users("sync", "--dry-run", **ROUTING))
    assert "would create  Alice" in out and "would create  Carol" in out
    assert vonage.writes() == []


def test_sync_with_no_user_named_says_so(users, vonage):
    assert "name none" in ok(users("sync"))


# --- CLIENT_CREATE_USERS on the production server ---


@pytest.fixture(params=["sqlite", "postgresql"])
def creating_server(request, tmp_path, project, vonage, certificate):
    """The production server with CLIENT_CREATE_USERS on, remembering its users in SQLite or PostgreSQL."""
    output = tmp_path / "server.log"
    database_url = database_url_for(request.param, tmp_path)
    with run_server(
        output,
        DATABASE_URL=database_url,
        CALL_LOG_TOKEN="users-tests-call-log-token",
        VONAGE_SIGNATURE_SECRET="",
        VONAGE_APPLICATION_ID=APPLICATION_ID,
        VONAGE_PRIVATE_KEY=str(project / "private.key"),
        CLIENT_AUTH="key",
        CLIENT_AUTH_KEY=CLIENT_AUTH_KEY,
        CLIENT_CREATE_USERS="on",
        VONAGE_API_HOST=vonage.host,
        REQUESTS_CA_BUNDLE=str(certificate[0]),
        NO_PROXY="127.0.0.1,localhost",
        LOG_FORMAT="line",
    ) as url:
        url.output = output
        url.database_url = database_url
        yield url


def login(server, user: str) -> requests.Response:
    return requests.post(
        f"{server}/client/token",
        json={"user": user},
        headers={"Authorization": f"Bearer {CLIENT_AUTH_KEY}"},
        timeout=30,
    )


def test_a_first_login_creates_the_user_and_the_next_asks_vonage_nothing(creating_server, vonage):
    assert login(creating_server, "Alice").status_code == 200
    assert vonage.user_names() == ["Alice"]
    assert login(creating_server, "Alice").status_code == 200
    assert len(vonage.requests_to("POST", "/v1/users")) == 1
    assert len(vonage.received) == 1
    wait_until(lambda: "created Vonage user Alice" in creating_server.output.read_text(), 10, "not logged")


def test_a_login_of_a_user_vonage_has_already_is_remembered_too(creating_server, vonage):
    vonage.add_user("Bob")
    assert login(creating_server, "Bob").status_code == 200
    asked = len(vonage.received)
    assert login(creating_server, "Bob").status_code == 200
    assert len(vonage.received) == asked
    assert vonage.user_names() == ["Bob"]


def test_a_user_that_cannot_be_created_gets_no_token_and_a_503(creating_server, vonage):
    vonage.fail("429")
    answer = login(creating_server, "Alice")
    assert answer.status_code == 503 and "token" not in answer.json()
    assert "rate limiting" in answer.json()["error"] and answer.headers["Retry-After"] == "5"
    vonage.fail(None)
    assert login(creating_server, "Alice").status_code == 200


def test_flask_users_shows_the_last_token_issued_here(creating_server, users, vonage):
    assert login(creating_server, "Alice").status_code == 200
    vonage.add_user("Bob")
    listed = ok(users(DATABASE_URL=creating_server.database_url)).splitlines()
    (alice,) = [line for line in listed if line.startswith("Alice ")]
    (bob,) = [line for line in listed if line.startswith("Bob ")]
    assert alice.split()[-1].startswith("20") and alice.split()[-1].endswith("Z")
    assert bob.split()[-1] == "-"
