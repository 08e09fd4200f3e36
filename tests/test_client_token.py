"""POST /client/token on the production server (serve.py), against a real OpenID issuer started here
(tests/oidc_issuer.py): every ID token that should log a user in does, every other kind is refused with 401 saying
why, and the login token it answers with is checked with PyJWT and the application's public key."""

from __future__ import annotations

import time

import jwt
import pytest
import requests

from support import keys
from support.oidc_issuer import AUDIENCE, JWKS_PATH, OidcIssuer
from support.production import wait_until
from support.servers import fresh_interpreter, run_server, start_up_error

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
CALL_LOG_TOKEN = "client-token-tests-call-log-token"
CLIENT_AUTH_KEY = "a-backend-key-that-is-long-enough-0123456789"
FORBIDDEN_PATHS = ("/*/calls/**", "/*/messages/**")


def public_key():
    return keys.rsa_key().public_key()


def server_settings(folder, private_key_file, **settings) -> dict:
    return {
        "DATABASE_URL": f"sqlite:///{folder / 'calls.db'}",
        "CALL_LOG_TOKEN": CALL_LOG_TOKEN,
        "VONAGE_APPLICATION_ID": APPLICATION_ID,
        "VONAGE_PRIVATE_KEY": str(private_key_file),
        "VONAGE_SIGNATURE_SECRET": "",
        "LOG_FORMAT": "line",
        **settings,
    }


class Server(str):
    output_file = None

    def output(self) -> str:
        return self.output_file.read_text(errors="replace")


def started(folder, private_key_file, **settings):
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / "server.log"
    running = run_server(output, **server_settings(folder, private_key_file, **settings))
    url = running.__enter__()
    server = Server(url)
    server.output_file = output
    return running, server


@pytest.fixture(scope="module")
def oidc_server(tmp_path_factory, private_key_file, issuer):
    running, server = started(
        tmp_path_factory.mktemp("oidc"),
        private_key_file,
        CLIENT_AUTH="oidc",
        CLIENT_AUTH_ISSUER=issuer.url,
        CLIENT_AUTH_AUDIENCE=AUDIENCE,
        CLIENT_TOKEN_TTL="2h",
    )
    yield server
    running.__exit__(None, None, None)


@pytest.fixture
def own_oidc_server(tmp_path, private_key_file):
    """A server of the test's own, with an issuer of its own, both fresh: nothing fetched or cached yet."""
    own_issuer = OidcIssuer()
    running, server = started(
        tmp_path, private_key_file, CLIENT_AUTH="oidc", CLIENT_AUTH_ISSUER=own_issuer.url, CLIENT_AUTH_AUDIENCE=AUDIENCE
    )
    yield own_issuer, server
    running.__exit__(None, None, None)
    own_issuer.close()


def login(server: str, id_token: str | None = None, headers: dict | None = None, **kwargs) -> requests.Response:
    sent = {"Authorization": f"Bearer {id_token}"} if id_token is not None else {}
    return requests.post(f"{server}/client/token", headers={**sent, **(headers or {})}, timeout=30, **kwargs)


def assert_refused(answer: requests.Response, status: int, *says: str) -> str:
    assert answer.status_code == status, answer.text
    assert "token" not in answer.json(), answer.text
    message = answer.json()["error"]
    for words in says:
        assert words in message, message
    return message


def minted_claims(answer: requests.Response) -> dict:
    assert answer.status_code == 200, answer.text
    return jwt.decode(answer.json()["token"], public_key(), algorithms=["RS256"])


def scraped(server: str, series: str) -> float:
    """The value of one series of the server's /metrics."""
    scrape = requests.get(f"{server}/metrics", headers={"Authorization": f"Bearer {CALL_LOG_TOKEN}"}, timeout=10)
    line = next(line for line in scrape.text.splitlines() if line.startswith(series))
    return float(line.split()[-1])


def refusals(server: str, reason: str) -> float:
    return scraped(server, f'voice_client_token_refusals_total{{reason="{reason}"}}')


def issued(server: str, auth: str) -> float:
    return scraped(server, f'voice_client_tokens_issued_total{{auth="{auth}"}}')


# --- a good ID token ---


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_good_id_token_gets_a_login_token_for_its_subject(oidc_server, issuer, algorithm):
    before = time.time()
    answer = login(oidc_server, issuer.id_token("Alice", algorithm))
    claims = minted_claims(answer)
    assert answer.json()["user"] == claims["sub"] == "Alice"
    assert claims["application_id"] == APPLICATION_ID
    assert jwt.get_unverified_header(answer.json()["token"])["alg"] == "RS256"
    assert claims["exp"] - claims["iat"] == 7200  # CLIENT_TOKEN_TTL=2h
    assert before - 1 <= claims["iat"] <= time.time() + 1
    assert answer.json()["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))
    assert answer.headers["Cache-Control"] == "no-store"


def test_the_login_token_grants_the_client_sdk_paths_and_never_calls_or_messages(oidc_server, issuer):
    claims = minted_claims(login(oidc_server, issuer.id_token("Alice")))
    paths = set(claims["acl"]["paths"])
    assert {"/*/users/**", "/*/conversations/**", "/*/sessions/**", "/*/legs/**"} <= paths
    assert not paths & set(FORBIDDEN_PATHS)
    assert not any(path.startswith(("/*/calls", "/*/messages")) for path in paths)


def test_every_login_token_has_a_jti_of_its_own(oidc_server, issuer):
    first = minted_claims(login(oidc_server, issuer.id_token("Alice")))
    second = minted_claims(login(oidc_server, issuer.id_token("Alice")))
    assert first["jti"] and first["jti"] != second["jti"]


def test_an_issued_token_is_logged_and_counted_but_the_token_itself_never_logged(oidc_server, issuer):
    before = issued(oidc_server, "oidc")
    answer = login(oidc_server, issuer.id_token("Logged"))
    token = answer.json()["token"]
    wait_until(lambda: "client token issued for Logged (oidc)" in oidc_server.output(), 10, "the issue was not logged")
    assert token not in oidc_server.output()
    assert token.split(".")[2] not in oidc_server.output()
    wait_until(lambda: issued(oidc_server, "oidc") == before + 1, 10, "the token was not counted")


def test_another_claim_can_name_the_user(tmp_path, private_key_file, issuer):
    running, server = started(
        tmp_path,
        private_key_file,
        CLIENT_AUTH="oidc",
        CLIENT_AUTH_ISSUER=issuer.url,
        CLIENT_AUTH_AUDIENCE=AUDIENCE,
        CLIENT_AUTH_USER_CLAIM="preferred_username",
    )
    try:
        assert minted_claims(login(server, issuer.id_token("sub-123", preferred_username="Bob")))["sub"] == "Bob"
        assert_refused(login(server, issuer.id_token("sub-123")), 401, "'preferred_username'", "CLIENT_AUTH_USER_CLAIM")
    finally:
        running.__exit__(None, None, None)


# --- every kind of bad ID token: 401, saying what was wrong ---


def test_no_id_token_is_refused(oidc_server):
    assert_refused(login(oidc_server), 401, "Authorization: Bearer")
    assert_refused(login(oidc_server, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}), 401, "Bearer")


def test_a_body_naming_a_user_gets_nothing_without_an_id_token(oidc_server):
    assert_refused(login(oidc_server, json={"user": "Alice"}), 401, "ID token")


def test_an_expired_id_token_is_refused(oidc_server, issuer):
    now = int(time.time())
    assert_refused(login(oidc_server, issuer.id_token(iat=now - 7200, exp=now - 3600)), 401, "expired")


def test_an_id_token_not_yet_valid_is_refused(oidc_server, issuer):
    now = int(time.time())
    assert_refused(login(oidc_server, issuer.id_token(iat=now + 3600, exp=now + 7200)), 401, "not valid yet")
    assert_refused(login(oidc_server, issuer.id_token(nbf=now + 3600)), 401, "not valid yet")


def test_an_id_token_of_another_issuer_is_refused(oidc_server, issuer):
    assert_refused(login(oidc_server, issuer.id_token(iss="https://evil.example")), 401, "another issuer", issuer.url)


def test_an_id_token_for_another_audience_is_refused(oidc_server, issuer):
    assert_refused(login(oidc_server, issuer.id_token(aud="someone-elses-app")), 401, "another audience", AUDIENCE)


def test_an_id_token_with_an_unknown_key_id_is_refused(oidc_server, issuer):
    assert_refused(login(oidc_server, issuer.id_token(key_id="made-up-key")), 401, "'made-up-key'", "not one of")


def test_an_unsigned_id_token_is_refused(oidc_server, issuer):
    assert_refused(login(oidc_server, issuer.unsigned_token()), 401, "'none'", "public-key algorithms")


def test_an_hs256_token_signed_with_the_issuers_public_key_is_refused(oidc_server, issuer):
    assert_refused(login(oidc_server, issuer.hs256_with_public_key()), 401, "'HS256'")


def test_an_id_token_with_a_changed_claim_is_refused(oidc_server, issuer):
    header, payload, signature = issuer.id_token("Alice").split(".")
    other = issuer.id_token("Mallory").split(".")[1]
    assert_refused(login(oidc_server, f"{header}.{other}.{signature}"), 401, "signature")


def test_an_id_token_without_the_user_claim_is_refused(oidc_server, issuer):
    assert_refused(login(oidc_server, issuer.id_token(sub=None)), 401, "'sub'")


def test_an_id_token_without_an_expiry_is_refused(oidc_server, issuer):
    assert_refused(login(oidc_server, issuer.id_token(exp=None)), 401, "'exp'")


def test_a_bearer_token_that_is_no_jwt_is_refused(oidc_server):
    assert_refused(login(oidc_server, "not-a-jwt"), 401, "not a JWT")


def test_a_refusal_is_logged_and_counted(oidc_server, issuer):
    before = refusals(oidc_server, "wrong_audience")
    login(oidc_server, issuer.id_token(aud="counted-audience"))
    wait_until(lambda: refusals(oidc_server, "wrong_audience") == before + 1, 10, "the refusal was not counted")
    wait_until(lambda: "client token refused (401, wrong_audience)" in oidc_server.output(), 10, "not logged")


def test_a_name_vonage_would_not_take_is_a_400(oidc_server, issuer):
    assert_refused(login(oidc_server, issuer.id_token("Alice,Bob")), 400, "Vonage would not take")
    assert_refused(login(oidc_server, issuer.id_token("447700900001")), 400, "phone number")
    assert_refused(login(oidc_server, issuer.id_token("x" * 101)), 400, "over the limit")


# --- the issuer's keys: rotation, and the issuer going away ---


def test_a_rotated_key_is_fetched_and_made_up_key_ids_fetch_at_most_once_a_minute(own_oidc_server):
    own_issuer, server = own_oidc_server
    minted_claims(login(server, own_issuer.id_token("Alice")))
    assert own_issuer.asked[JWKS_PATH] == 1
    own_issuer.rotate()
    minted_claims(login(server, own_issuer.id_token("Alice")))  # a key id not seen yet: the keys fetched again
    assert own_issuer.asked[JWKS_PATH] == 2
    for attempt in range(5):
        assert_refused(login(server, own_issuer.id_token(key_id=f"made-up-{attempt}")), 401, "not one of")
    assert own_issuer.asked[JWKS_PATH] == 2  # within the minute: no fetch for each made-up key id


def test_with_keys_cached_logins_go_on_while_the_issuer_is_down(own_oidc_server):
    own_issuer, server = own_oidc_server
    minted_claims(login(server, own_issuer.id_token("Alice")))
    own_issuer.go_down()
    minted_claims(login(server, own_issuer.id_token("Alice")))
    minted_claims(login(server, own_issuer.id_token("Bob", "ES256")))


def test_with_no_key_cached_an_issuer_that_is_down_is_a_503_with_retry_after(own_oidc_server):
    own_issuer, server = own_oidc_server
    token = own_issuer.id_token("Alice")
    own_issuer.go_down()
    answer = login(server, token)
    assert_refused(answer, 503, "cannot be fetched", "try again")
    assert 1 <= int(answer.headers["Retry-After"]) <= 10


def test_a_slow_issuer_is_a_503_not_a_held_thread(own_oidc_server):
    own_issuer, server = own_oidc_server
    own_issuer.fail("slow")
    answer = login(server, own_issuer.id_token("Alice"))
    assert_refused(answer, 503, "did not answer within")
    assert "Retry-After" in answer.headers


@pytest.mark.parametrize(
    "failure, says",
    [("500", "answered 500"), ("not-json", "not JSON"), ("wrong-issuer", "names the issuer"), ("no-keys", "no usable")],
)
def test_an_issuer_that_answers_wrongly_is_a_503(own_oidc_server, failure, says):
    own_issuer, server = own_oidc_server
    own_issuer.fail(failure)
    assert_refused(login(server, own_issuer.id_token("Alice")), 503, says)


# --- CLIENT_AUTH=key and unset ---


@pytest.fixture(scope="module")
def key_server(tmp_path_factory, private_key_file):
    running, server = started(
        tmp_path_factory.mktemp("key"), private_key_file, CLIENT_AUTH="key", CLIENT_AUTH_KEY=CLIENT_AUTH_KEY
    )
    yield server
    running.__exit__(None, None, None)


def test_the_backend_with_the_key_gets_a_token_for_the_user_it_names(key_server):
    answer = login(key_server, CLIENT_AUTH_KEY, json={"user": "Alice"})
    claims = minted_claims(answer)
    assert claims["sub"] == answer.json()["user"] == "Alice"
    assert claims["exp"] - claims["iat"] == 3600  # the default CLIENT_TOKEN_TTL


def test_a_wrong_or_missing_key_gets_no_token(key_server):
    assert_refused(login(key_server, CLIENT_AUTH_KEY[:-1] + "x", json={"user": "Alice"}), 401, "not CLIENT_AUTH_KEY")
    assert_refused(login(key_server, json={"user": "Alice"}), 401, "CLIENT_AUTH_KEY")


def test_the_key_without_a_user_is_a_400(key_server):
    assert_refused(login(key_server, CLIENT_AUTH_KEY, data="Alice"), 400, '{"user": "Alice"}')
    assert_refused(login(key_server, CLIENT_AUTH_KEY, json={"user": ""}), 400, "empty")


def test_with_client_auth_unset_the_route_is_a_404_naming_client_auth(tmp_path, private_key_file):
    running, server = started(tmp_path, private_key_file, CLIENT_AUTH="")
    try:
        assert_refused(
            login(server, CLIENT_AUTH_KEY, json={"user": "Alice"}), 404, "CLIENT_AUTH=oidc", "CLIENT_AUTH=key"
        )
    finally:
        running.__exit__(None, None, None)


# --- what a worker loads ---

IMPORTS_SCRIPT = """
import json, sys, tempfile
sys.path.insert(0, "tests")
from app import close_app, create_app

folder = tempfile.mkdtemp()
common = {"DATABASE_URL": f"sqlite:///{folder}/calls.db", "INSTANCE_PATH": folder, "CALL_LOG_TOKEN": "x" * 20,
          "VONAGE_APPLICATION_ID": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "VONAGE_PRIVATE_KEY": sys.argv[1]}
unset = create_app(common)
off = sorted(name for name in sys.modules if name.split(".")[0] in ("jwt", "cryptography"))
from support.oidc_issuer import AUDIENCE, OidcIssuer  # the test's own issuer signs with PyJWT: loaded after that check

issuer = OidcIssuer()
key = create_app({**common, "CLIENT_AUTH": "key", "CLIENT_AUTH_KEY": "k" * 40})
oidc = create_app({**common, "CLIENT_AUTH": "oidc", "CLIENT_AUTH_ISSUER": issuer.url, "CLIENT_AUTH_AUDIENCE": AUDIENCE})
bearer = {"Authorization": "Bearer " + "k" * 40}
key.test_client().post("/client/token", json={"user": "Warm"}, headers=bearer)
tokens = [issuer.id_token("Alice"), issuer.id_token("Bob", "ES256"), issuer.unsigned_token()]  # the issuer's work
before = set(sys.modules)
statuses = [
    key.test_client().post("/client/token", json={"user": "Alice"}, headers=bearer).status_code,
    key.test_client().post("/client/token", json={"user": "Alice"}).status_code,
    *(oidc.test_client().post("/client/token", headers={"Authorization": "Bearer " + token}).status_code
      for token in tokens),
]
for app in (unset, key, oidc):
    close_app(app)
issuer.close()
print(json.dumps({"off": off, "statuses": statuses, "imported": sorted(set(sys.modules) - before)}))
"""


def test_unset_loads_no_jwt_library_and_a_login_request_imports_no_module(private_key_file):
    outcome = fresh_interpreter(IMPORTS_SCRIPT, str(private_key_file))
    assert outcome["off"] == [], "CLIENT_AUTH unset loaded " + ", ".join(outcome["off"])
    assert outcome["statuses"] == [200, 401, 200, 200, 401]
    assert outcome["imported"] == [], f"modules a login request imported: {outcome['imported']}"


# --- start-up ---


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"CLIENT_AUTH": "oidc", "CLIENT_AUTH_AUDIENCE": AUDIENCE}, "error: CLIENT_AUTH=oidc needs CLIENT_AUTH_ISSUER"),
        ({"CLIENT_AUTH": "key", "CLIENT_AUTH_KEY": "short"}, "error: CLIENT_AUTH_KEY: it must be at least 32"),
        (
            {"CLIENT_AUTH": "key", "CLIENT_AUTH_KEY": CLIENT_AUTH_KEY, "CLIENT_TOKEN_TTL": "48h"},
            "error: CLIENT_TOKEN_TTL:",
        ),
    ],
)
def test_make_run_refuses_a_client_auth_it_cannot_serve_with_one_line(tmp_path, private_key_file, settings, says):
    folder = tmp_path / "tmp"
    folder.mkdir()
    line = start_up_error(folder, **server_settings(tmp_path, private_key_file, **settings))
    assert line.startswith(says) and "for example" in line


# --- an issuer over HTTPS, as every one but a local one is ---


@pytest.fixture(scope="module")
def issuer_certificate(tmp_path_factory):
    from support.vonage_standin import make_certificate

    return make_certificate(tmp_path_factory.mktemp("issuer-tls"))


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_an_https_issuer_is_trusted_only_with_a_certificate_the_server_trusts(
    tmp_path, private_key_file, issuer_certificate, trusted
):
    https_issuer = OidcIssuer(issuer_certificate)
    # The certificate is for 127.0.0.1 and localhost; the server trusts it only when SSL_CERT_FILE names it.
    trust = {"SSL_CERT_FILE": str(issuer_certificate[0])} if trusted else {"SSL_CERT_FILE": "/nonexistent"}
    running, server = started(
        tmp_path,
        private_key_file,
        CLIENT_AUTH="oidc",
        CLIENT_AUTH_ISSUER=https_issuer.url,
        CLIENT_AUTH_AUDIENCE=AUDIENCE,
        **trust,
    )
    try:
        answer = login(server, https_issuer.id_token("Alice"))
        if trusted:
            assert minted_claims(answer)["sub"] == "Alice"
        else:
            assert_refused(answer, 503, "cannot reach", "CERTIFICATE_VERIFY_FAILED")
    finally:
        running.__exit__(None, None, None)
        https_issuer.close()
