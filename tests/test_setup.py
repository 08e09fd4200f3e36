"""`flask setup`, run as a user runs it (`python -m flask setup` in a project folder of its own, so no developer's
.env is read or written), against a stand-in of Vonage's Applications and Numbers APIs over HTTPS on loopback
(tests/support/vonage_standin.py): the SDK's own client makes every request, only its hosts are the stand-in's."""

import os
import stat
import subprocess
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from support import keys
from support.commands import PUBLIC_URL, assert_one_error_line, flask
from support.ngrok_standin import NgrokStandIn, tunnel
from support.servers import free_port
from support.vonage_standin import VonageStandIn

NUMBER = {"country": "GB", "msisdn": "447700900001", "type": "mobile-lvn", "features": ["VOICE", "SMS"]}
# A .env as a developer keeps one: comments, a blank line, an inline comment, an export, a value over two lines,
# and no newline at the end.
ENV_BEFORE = (
    "# my voice server\n"
    "RING_TIMEOUT=45  # seconds\n"
    "\n"
    "export TTS_LANGUAGE=en-GB\n"
    'GREETING="Hello,\nplease hold."\n'
    "# VONAGE_APPLICATION_ID=aaaaaaaa-bbbb-cccc-dddd-0123456789ab   # as copied from .env.example\n"
    "CALL_LIMIT=600"
)
WEBHOOKS = {
    "answer_url": {"address": f"{PUBLIC_URL}/voice/answer", "http_method": "GET"},
    "event_url": {"address": f"{PUBLIC_URL}/voice/event", "http_method": "POST"},
    "fallback_answer_url": {"address": f"{PUBLIC_URL}/voice/fallback", "http_method": "GET"},
}


@pytest.fixture
def vonage(certificate):
    stand_in = VonageStandIn(certificate, numbers=[NUMBER])
    yield stand_in
    stand_in.close()


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / ".env").write_text(ENV_BEFORE)
    return folder


@pytest.fixture
def setup(project, vonage, certificate):
    """Runs `flask setup ARGS` in the project, with the account's key and secret and PUBLIC_URL set."""

    def run(*args: str, umask: int = 0o022, **env: str) -> subprocess.CompletedProcess:
        return flask(project, vonage, certificate, "setup", *args, umask=umask, **env)

    return run


def env_lines(project) -> list[str]:
    return (project / ".env").read_text().splitlines()


def created_application(vonage) -> dict:
    (created,) = vonage.applications.values()
    return created


# --- A new project ------------------------------------------------------------------------------------------------


def test_first_run_creates_a_voice_application_with_signed_callbacks_at_public_url(setup, vonage):
    result = setup()
    assert result.returncode == 0, result.stdout + result.stderr
    (create,) = vonage.requests_to("POST", "/v2/applications")
    assert create.body["name"] == "Vonage voice webhook server"
    assert create.body["capabilities"] == {"voice": {"webhooks": WEBHOOKS, "signed_callbacks": True}}
    application = created_application(vonage)
    assert f"created application {application['id']} (Vonage voice webhook server)" in result.stdout
    assert f"answer_url           GET {PUBLIC_URL}/voice/answer" in result.stdout


def test_first_run_saves_the_private_half_of_the_key_it_sent_readable_only_by_its_owner(setup, project, vonage):
    result = setup(umask=0)  # even with nothing masked, the file is never readable by others
    assert result.returncode == 0, result.stderr
    key_file = project / "private.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    sent = created_application(vonage)["keys"]["public_key"]
    assert private.public_key() == serialization.load_pem_public_key(sent.encode())
    assert private.key_size >= 2048
    assert [name for name in os.listdir(project) if name.endswith(".partial")] == []


def test_first_run_writes_the_two_settings_into_env_keeping_every_other_line(setup, project, vonage):
    result = setup()
    assert result.returncode == 0, result.stderr
    application_id = created_application(vonage)["id"]
    assert (project / ".env").read_text() == (
        ENV_BEFORE
        + "\n# added by flask setup\n"
        + f"VONAGE_APPLICATION_ID={application_id}\n"
        + "VONAGE_PRIVATE_KEY=./private.key\n"
    )


def test_a_new_env_is_made_readable_only_by_its_owner(setup, project, vonage):
    (project / ".env").unlink()
    result = setup()
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((project / ".env").stat().st_mode) == 0o600
    assert env_lines(project) == [
        "# added by flask setup",
        f"VONAGE_APPLICATION_ID={created_application(vonage)['id']}",
        "VONAGE_PRIVATE_KEY=./private.key",
    ]


def test_an_existing_env_keeps_its_mode(setup, project):
    (project / ".env").chmod(0o640)
    assert setup().returncode == 0
    assert stat.S_IMODE((project / ".env").stat().st_mode) == 0o640


def test_the_application_it_made_is_the_one_flask_token_signs_for(setup, project, vonage, certificate):
    assert setup().returncode == 0
    token = flask(project, vonage, certificate, "token", "Alice")
    assert token.returncode == 0, token.stderr
    application = created_application(vonage)
    public_key = serialization.load_pem_public_key(application["keys"]["public_key"].encode())
    claims = jwt.decode(token.stdout.strip(), public_key, algorithms=["RS256"])
    assert (claims["application_id"], claims["sub"]) == (application["id"], "Alice")


def test_without_public_url_the_ngrok_tunnel_is_used(setup, vonage):
    ngrok = NgrokStandIn()
    try:
        ngrok.serve(tunnel("https://tunnel.ngrok-free.app", "http://localhost:3000"))
        result = setup(PUBLIC_URL=None, NGROK_API_URL=ngrok.url)
    finally:
        ngrok.close()
    assert result.returncode == 0, result.stderr
    (create,) = vonage.requests_to("POST", "/v2/applications")
    webhooks = create.body["capabilities"]["voice"]["webhooks"]
    assert webhooks["answer_url"]["address"] == "https://tunnel.ngrok-free.app/voice/answer"


# --- Run again --------------------------------------------------------------------------------------------------


def test_a_second_run_changes_nothing_and_says_so(setup, project, vonage):
    assert setup().returncode == 0
    env_before, key_before = (project / ".env").read_bytes(), (project / "private.key").read_bytes()
    writes = len(vonage.writes())
    assert writes == 1
    again = setup()
    assert again.returncode == 0, again.stderr
    application_id = created_application(vonage)["id"]
    assert again.stdout.splitlines() == [
        f"already set up: application {application_id} (Vonage voice webhook server) for {PUBLIC_URL}; nothing changed"
    ]
    assert len(vonage.writes()) == writes
    assert vonage.requests_to("GET", f"/v2/applications/{application_id}")
    assert (project / ".env").read_bytes() == env_before
    assert (project / "private.key").read_bytes() == key_before


def test_a_second_run_for_another_public_url_changes_nothing_and_points_at_flask_webhooks(setup, vonage):
    assert setup().returncode == 0
    moved = setup(PUBLIC_URL="https://new.ngrok.app")
    line = assert_one_error_line(
        moved,
        "does not call this server at https://new.ngrok.app",
        f"(it calls {PUBLIC_URL})",
        "flask webhooks https://new.ngrok.app points it here",
        exit_code=1,
    )
    assert "flask setup --force" in line
    assert len(vonage.writes()) == 1


def test_a_second_run_names_the_one_webhook_that_is_not_this_servers(setup, vonage):
    assert setup().returncode == 0
    del created_application(vonage)["capabilities"]["voice"]["webhooks"]["fallback_answer_url"]
    line = assert_one_error_line(setup(), "(fallback_answer_url is (not set))", exit_code=1)
    assert "answer_url is" not in line.replace("fallback_answer_url", "")


def test_a_key_that_is_not_the_applications_is_refused(setup, project, vonage):
    assert setup().returncode == 0
    (project / "private.key").write_bytes(keys.pkcs8())
    assert_one_error_line(setup(), "VONAGE_PRIVATE_KEY is not the key of application", exit_code=2)
    assert len(vonage.writes()) == 1


def test_an_application_id_the_account_does_not_have_is_refused(setup, project, vonage):
    (project / "private.key").write_bytes(keys.pkcs8())
    missing = str(uuid.uuid4())
    result = setup(VONAGE_APPLICATION_ID=missing, VONAGE_PRIVATE_KEY="./private.key")
    assert_one_error_line(result, f"application {missing}", "(404)", "flask setup --force", exit_code=5)
    assert vonage.writes() == []


def test_force_makes_a_new_application_and_replaces_the_key_and_the_two_lines(setup, project, vonage):
    assert setup().returncode == 0
    first_id = created_application(vonage)["id"]
    first_key = (project / "private.key").read_bytes()
    forced = setup("--force")
    assert forced.returncode == 0, forced.stderr
    (second_id,) = set(vonage.applications) - {first_id}
    assert f"the earlier application {first_id} is left as it is" in forced.stdout
    assert (project / "private.key").read_bytes() != first_key
    assert stat.S_IMODE((project / "private.key").stat().st_mode) == 0o600
    lines = env_lines(project)
    assert lines.count(f"VONAGE_APPLICATION_ID={second_id}") == 1 and f"VONAGE_APPLICATION_ID={first_id}" not in lines
    assert lines.count("VONAGE_PRIVATE_KEY=./private.key") == 1
    assert (project / ".env").read_text().startswith(ENV_BEFORE)
    again = setup()
    assert again.returncode == 0 and again.stdout.startswith(f"already set up: application {second_id}")


# --- --number -----------------------------------------------------------------------------------------------------


def test_number_links_one_of_the_accounts_numbers_to_the_new_application(setup, vonage):
    result = setup("--number", "+44 7700 900001")
    assert result.returncode == 0, result.stderr
    application_id = created_application(vonage)["id"]
    (update,) = vonage.requests_to("POST", "/number/update")
    assert update.content_type == "application/x-www-form-urlencoded"
    assert (update.body["country"], update.body["msisdn"], update.body["app_id"]) == (
        "GB",
        "447700900001",
        application_id,
    )
    assert f"linked 447700900001 (GB) to application {application_id}" in result.stdout


def test_number_on_a_set_up_project_links_it_once_then_changes_nothing(setup, vonage):
    assert setup().returncode == 0
    application_id = created_application(vonage)["id"]
    linked = setup("--number", "447700900001")
    assert linked.returncode == 0, linked.stderr
    assert f"linked 447700900001 (GB) to application {application_id}" in linked.stdout
    again = setup("--number", "447700900001")
    assert again.returncode == 0, again.stderr
    assert "with 447700900001 linked to it; nothing changed" in again.stdout
    assert len(vonage.requests_to("POST", "/number/update")) == 1


def test_a_link_that_fails_after_the_application_is_made_says_so_and_a_second_run_links_it(setup, project, vonage):
    vonage.fail("500", path="/number/update")
    failed = setup("--number", "447700900001")
    application_id = created_application(vonage)["id"]
    assert_one_error_line(
        failed,
        f"application {application_id} is set up, but 447700900001 was not linked to it",
        "(500)",
        "flask setup --number 447700900001 tries again",
        exit_code=7,
    )
    assert f"VONAGE_APPLICATION_ID={application_id}" in env_lines(project)
    vonage.fail(None)
    again = setup("--number", "447700900001")
    assert again.returncode == 0, again.stderr
    assert f"linked 447700900001 (GB) to application {application_id}" in again.stdout
    assert vonage.numbers[0]["app_id"] == application_id
    assert len(vonage.requests_to("POST", "/v2/applications")) == 1


def test_a_number_the_account_does_not_own_is_refused_before_anything_is_made(setup, project, vonage):
    result = setup("--number", "447700900999")
    assert_one_error_line(result, "447700900999 is not one of this account's numbers", exit_code=2)
    assert vonage.writes() == []
    assert not (project / "private.key").exists()
    assert (project / ".env").read_text() == ENV_BEFORE


def test_a_number_is_the_exact_one_not_a_longer_one_that_starts_with_it(setup, vonage):
    # The account's numbers are looked up by their first digits: only the exact number is the one asked for.
    vonage.numbers.append({"country": "DE", "msisdn": "4930123456789", "type": "landline"})
    result = setup("--number", "493012345678")
    assert_one_error_line(result, "493012345678 is not one of this account's numbers", exit_code=2)
    assert vonage.requests_to("GET", "/account/numbers")[0].query["pattern"] == "493012345678"
    assert vonage.writes() == []


def test_a_number_that_is_not_a_phone_number_is_refused_before_vonage_is_asked(setup, vonage):
    assert_one_error_line(setup("--number", "Bob"), "--number: ", exit_code=2)
    assert vonage.received == []


# --- Failures: one line, a non-zero exit, nothing left half made --------------------------------------------------


def assert_nothing_written(project):
    assert not (project / "private.key").exists()
    assert (project / ".env").read_text() == ENV_BEFORE
    assert [name for name in os.listdir(project) if name.endswith(".partial")] == []


@pytest.mark.parametrize(
    "missing, says",
    [
        ({"VONAGE_API_KEY": None}, "VONAGE_API_KEY is not set"),
        ({"VONAGE_API_SECRET": None}, "VONAGE_API_SECRET is not set"),
    ],
)
def test_missing_account_credentials_are_named(setup, project, vonage, missing, says):
    assert_one_error_line(setup(**missing), says, "API settings", exit_code=2)
    assert vonage.received == []
    assert_nothing_written(project)


def test_a_wrong_secret_is_vonages_401_in_one_line(setup, project, vonage):
    result = setup(VONAGE_API_SECRET="wrong-secret")
    assert_one_error_line(result, "(401)", "VONAGE_API_KEY and VONAGE_API_SECRET do not match", exit_code=4)
    assert vonage.applications == {}
    assert_nothing_written(project)


@pytest.mark.parametrize(
    "failure, says, exit_code",
    [
        ("500", "Vonage had a server error (500)", 7),
        ("slow", "Vonage did not answer in time", 7),
        ("malformed", "Vonage's answer to creating the application was not one", 8),
    ],
)
def test_vonage_failing_is_one_line_and_leaves_no_key_behind(setup, project, vonage, failure, says, exit_code):
    vonage.fail(failure)
    assert_one_error_line(setup(VONAGE_TIMEOUT="1"), says, exit_code=exit_code)
    assert_nothing_written(project)


@pytest.mark.parametrize(
    "failure, says, exit_code",
    [
        ("500", "Vonage had a server error (500)", 7),
        ("malformed", "was not what its Numbers API documents", 8),
    ],
)
def test_the_numbers_api_failing_is_one_line_before_anything_is_made(setup, project, vonage, failure, says, exit_code):
    vonage.fail(failure)
    assert_one_error_line(setup("--number", "447700900001"), says, exit_code=exit_code)
    assert_nothing_written(project)


def test_vonage_out_of_reach_is_one_line(setup, project):
    assert_one_error_line(setup(VONAGE_API_HOST=f"127.0.0.1:{free_port()}"), "cannot reach Vonage", exit_code=7)
    assert_nothing_written(project)


def test_an_existing_key_file_is_kept_without_force(setup, project, vonage):
    (project / "private.key").write_bytes(b"someone's key\n")
    assert_one_error_line(setup(), "private.key exists", "flask setup --force", exit_code=2)
    assert (project / "private.key").read_bytes() == b"someone's key\n"
    assert vonage.received == []


def test_an_env_that_names_a_private_key_is_kept_without_force(setup, project, vonage):
    (project / "other.key").write_bytes(keys.pkcs8())
    (project / ".env").write_text(ENV_BEFORE + "\nVONAGE_PRIVATE_KEY=./other.key\n")
    assert_one_error_line(setup(), "already sets VONAGE_PRIVATE_KEY", "flask setup --force", exit_code=2)
    assert vonage.received == []


def test_an_env_that_cannot_be_written_stops_before_the_application_is_made(setup, project, vonage):
    # A folder where .env should be: unwritable even for root, whom file modes do not stop.
    (project / ".env").unlink()
    (project / ".env").mkdir()
    assert_one_error_line(setup(), ".env", "cannot update", exit_code=2)
    assert vonage.received == []
    assert not (project / "private.key").exists()


def test_an_env_whose_new_version_cannot_be_made_stops_before_the_application_is_made(setup, project, vonage):
    # A link into a folder that is not there: nothing to read, and nowhere to write the new .env.
    (project / ".env").unlink()
    (project / ".env").symlink_to(project / "gone" / "env")
    assert_one_error_line(setup(), ".env", "cannot update", exit_code=2)
    assert vonage.received == []
    assert not (project / "private.key").exists()


def test_a_symlinked_env_is_written_where_it_points_and_stays_a_link(setup, project, vonage):
    (project / "config").mkdir()
    (project / "config" / "env").write_text(ENV_BEFORE)
    (project / ".env").unlink()
    (project / ".env").symlink_to(project / "config" / "env")
    assert setup().returncode == 0
    assert (project / ".env").is_symlink()
    assert f"VONAGE_APPLICATION_ID={created_application(vonage)['id']}" in env_lines(project)


def test_no_public_url_and_no_ngrok_says_to_set_one_or_start_the_other(setup, project, vonage):
    result = setup(PUBLIC_URL=None)
    assert_one_error_line(result, "PUBLIC_URL is not set", "ngrok is not running", "ngrok http 3000", exit_code=2)
    assert vonage.received == []
    assert_nothing_written(project)
