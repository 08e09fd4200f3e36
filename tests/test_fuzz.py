"""Issue #15: property-based tests of every route a stranger can reach, through Flask's test client.

Properties, for any request Hypothesis makes:
  - no 5xx (the database is always there, but in one test: then a 5xx must be a 503 with Retry-After; an
    unsigned request to a signed server is the one other 503, with Retry-After too), no traceback in the log;
  - the answer routes answer 200 with an NCCO the Vonage SDK's models accept, and record the decision;
  - an event sent as a JSON object, a form or a query string is acknowledged with 2xx and stored;
  - with VONAGE_SIGNATURE_SECRET set, a request not correctly signed gets no 2xx and writes nothing;
  - the call-log API and page never fail on anything stored, nor on any query.

Profiles: "ci" when CI is set: derandomized, a fixed number of examples, and no shrinking, so that a failing run
takes no longer than a passing one (the explicit tests at the end hold the smallest case of each bug found so
far); "dev" otherwise: the same examples, with a failure shrunk to its smallest case; "thorough" with
HYPOTHESIS_PROFILE=thorough: ten times the examples, random, shrunk. Each test prints how many requests it sent
and what they got (pytest -s shows it).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import jwt
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from calllog.schema import answers, metadata, schema_version
from conftest import CALL_LOG_TOKEN, built_app
from runtime import logs
from support.pg import fresh_postgres_url
from support.strategies import (
    STATUSES,
    WebRequest,
    any_requests,
    event_objects,
    object_requests,
    path_segment,
    plain_text,
    raw_queries,
)
from vonage_helper.ncco_models import parse_ncco

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
_NO_SHRINKING = [Phase.explicit, Phase.reuse, Phase.generate]
settings.register_profile(
    "dev", derandomize=True, database=None, max_examples=200, deadline=None, suppress_health_check=_SLOW_IS_FINE
)
settings.register_profile("ci", settings.get_profile("dev"), phases=_NO_SHRINKING)
settings.register_profile("thorough", max_examples=2000, deadline=None, suppress_health_check=_SLOW_IS_FINE)


def chosen_profile() -> str:
    if os.environ.get("HYPOTHESIS_PROFILE") == "thorough":
        return "thorough"
    return "ci" if os.environ.get("CI") else "dev"


PROFILE = chosen_profile()
FUZZ = settings.get_profile(PROFILE)
SECRET = "fuzz-signature-secret-0123456789abcdef0123"
ANSWER_PATHS = ["/voice/answer", "/voice/fallback"]
VOICE_PATHS = [*ANSWER_PATHS, "/voice/event"]
AUTH = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}
SERVER_RECURSION_LIMIT = 1000  # Python's default
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def examples(factor: float, database_url: str = "sqlite") -> settings:
    """The profile's settings with `factor` times its examples. On PostgreSQL (which CI runs too, for what only
    storage decides) a quarter of those, not shrunk: each example costs commits, and the SQLite run and the
    explicit tests below give the smallest cases."""
    if database_url.startswith("postgresql"):
        count = max(1, int(FUZZ.max_examples * factor / 4))
        return settings(FUZZ, max_examples=count, phases=_NO_SHRINKING)
    return settings(FUZZ, max_examples=max(1, int(FUZZ.max_examples * factor)))


# --- the server under test, and what it logged --------------------------------------------------------


class LogRecorder(logging.Handler):
    """Keeps every record logged while it is attached to the root logger (the server's `voice` log included)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.records = self.records, []
        return taken


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """The records that carry or print a traceback, written as the server's own log output writes them."""
    found = []
    for record in records:
        line = logs.output_handler().format(record)
        if record.exc_info or "Traceback" in line:
            found.append(line)
    return found


@dataclass
class Tally:
    """What one test's requests got."""

    requests: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    tracebacks: int = 0

    def line(self, name: str) -> str:
        errors = sum(count for status, count in self.statuses.items() if status >= 500)
        statuses = dict(sorted(self.statuses.items()))
        return f"{name}: {self.requests} requests, {errors} 5xx, {self.tracebacks} tracebacks; statuses {statuses}"


class Server:
    """One app and its test client, for all the examples of one test; counts what it answered and logged."""

    def __init__(self, app, recorder: LogRecorder):
        self.app = app
        self.call_log = app.extensions["call_log"]
        self.client = app.test_client()
        self.recorder = recorder
        self.tally = Tally()
        self.tracebacks: list[str] = []

    def begin(self) -> None:
        """Start an example: forget what earlier ones logged (a failed example leaves its records behind)."""
        self.recorder.take()
        self.tracebacks = []

    def send(self, request: WebRequest, path: str, headers: dict | None = None):
        # Hypothesis doubles the recursion limit inside examples; a server thread has Python's default, and
        # what nests too deeply for it must be found here too.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(SERVER_RECURSION_LIMIT)
        try:
            response = request.send(self.client, path, headers)
        finally:
            sys.setrecursionlimit(limit)
        self.tally.requests += 1
        self.tally.statuses[response.status_code] += 1
        self._collect()
        return response

    def get(self, url: str, headers: dict | None = None):
        return self.send(WebRequest("GET"), url, headers)

    def stored(self) -> tuple[int, int]:
        """How many events and answer decisions the call log holds, once everything queued is committed."""
        self.call_log.client.flush()
        with self.call_log.database.engine.connect() as connection:
            answer_count = connection.execute(select(func.count()).select_from(answers)).scalar_one()
        self._collect()
        return self.call_log.reader.count_events(), answer_count

    def empty_call_log(self) -> None:
        """Delete every stored row, so that an example's reads see only what it stored."""
        self.call_log.client.flush()
        with self.call_log.database.engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                if table is not schema_version:
                    connection.execute(table.delete())

    def assert_no_traceback(self) -> None:
        self._collect()
        if self.tracebacks:
            pytest.fail("the server logged a traceback:\n" + self.tracebacks[0], pytrace=False)

    def _collect(self) -> None:
        found = tracebacks(self.recorder.take())
        self.tally.tracebacks += len(found)
        self.tracebacks += found


def assert_not_a_server_error(response, retry_after_allowed: bool = False) -> None:
    """No 5xx; where a 503 is allowed (no database, no signature) it must say when to retry."""
    if retry_after_allowed and response.status_code == 503:
        assert response.headers.get("Retry-After"), f"503 without Retry-After: {response.get_data(as_text=True)}"
        return
    assert response.status_code < 500, f"{response.status_code}: {response.get_data(as_text=True)[:300]}"


@pytest.fixture
def database_url(request, tmp_path):
    if getattr(request, "param", "sqlite") == "postgresql":
        return fresh_postgres_url()
    return f"sqlite:///{tmp_path / 'calls.db'}"


TOTALS = Tally()


@pytest.fixture(scope="module", autouse=True)
def totals():
    yield
    print("\n" + TOTALS.line(f"test_fuzz.py, profile {PROFILE}, all tests"))


@pytest.fixture
def server_factory(database_url, request):
    """Builds the server with extra settings; afterwards closes its call log and prints its tally."""
    recorder = LogRecorder()
    logging.getLogger().addHandler(recorder)
    servers: list[Server] = []

    @contextmanager
    def build(**extra: str) -> Iterator[Server]:
        with built_app({"DATABASE_URL": database_url, "CALL_LOG_TOKEN": CALL_LOG_TOKEN, **extra}) as app:
            server = Server(app, recorder)
            servers.append(server)
            yield server

    try:
        yield build
    finally:
        logging.getLogger().removeHandler(recorder)
        for server in servers:
            print("\n" + server.tally.line(request.node.name))
            TOTALS.requests += server.tally.requests
            TOTALS.statuses.update(server.tally.statuses)
            TOTALS.tracebacks += server.tally.tracebacks


def unique_timestamps() -> Iterator[str]:
    """Timestamps no other event of the run has: an event's identity includes its timestamp."""
    count = 0
    while True:
        count += 1
        yield f"2026-11-24T07:36:{count:06d}Z"


# --- the answer routes ---------------------------------------------------------------------------------


def test_answer_routes_answer_any_request_with_200_and_a_valid_ncco(server_factory):
    with server_factory() as server:

        @examples(3)
        @given(request=any_requests(), path=st.sampled_from(ANSWER_PATHS))
        def answers_with_an_ncco(request: WebRequest, path: str):
            server.begin()
            response = server.send(request, path)
            assert_not_a_server_error(response)
            assert response.status_code == 200 and response.mimetype == "application/json"
            parse_ncco(response.get_json())
            server.assert_no_traceback()

        answers_with_an_ncco()


@BOTH_DATABASES
def test_every_answer_decision_is_recorded(server_factory, database_url):
    with server_factory() as server:

        @examples(1, database_url)
        @given(request=any_requests(), path=st.sampled_from(ANSWER_PATHS))
        def recorded(request: WebRequest, path: str):
            server.begin()
            events, answer_count = server.stored()
            server.send(request, path)
            assert server.stored() == (events, answer_count + 1)
            server.assert_no_traceback()

        recorded()


# --- the event route -----------------------------------------------------------------------------------


@BOTH_DATABASES
def test_every_event_sent_as_an_object_form_or_query_is_acknowledged_and_stored(server_factory, database_url):
    timestamps = unique_timestamps()
    with server_factory() as server:

        @examples(3, database_url)
        @given(fields=event_objects(), data=st.data())
        def stored(fields: dict, data):
            server.begin()
            request = data.draw(object_requests(st.just({**fields, "timestamp": next(timestamps)})))
            events, answer_count = server.stored()
            response = server.send(request, "/voice/event")
            assert_not_a_server_error(response)
            assert 200 <= response.status_code < 300, (response.status_code, response.get_data(as_text=True)[:300])
            assert server.stored() == (events + 1, answer_count)
            server.assert_no_traceback()

        stored()


def test_a_repeated_delivery_is_acknowledged_and_stored_once(server_factory):
    with server_factory() as server:

        @examples(0.5)
        @given(request=object_requests(event_objects().filter(bool)))
        def once(request: WebRequest):
            server.begin()
            server.send(request, "/voice/event")
            before = server.stored()
            response = server.send(request, "/voice/event")
            assert 200 <= response.status_code < 300, response.status_code
            assert server.stored() == before
            server.assert_no_traceback()

        once()


@BOTH_DATABASES
def test_event_route_answers_any_request_without_5xx_and_stores_only_what_it_acknowledges(server_factory, database_url):
    with server_factory() as server:

        @examples(3, database_url)
        @given(request=any_requests())
        def acknowledged_or_refused(request: WebRequest):
            server.begin()
            events, _ = server.stored()
            response = server.send(request, "/voice/event")
            assert_not_a_server_error(response)
            if response.status_code >= 300:
                assert server.stored()[0] == events, f"answered {response.status_code}, yet stored"
            server.assert_no_traceback()

        acknowledged_or_refused()


DEEP_BODIES = {
    "array-10000-deep": b"[" * 10_000 + b"]" * 10_000,
    "object-10000-deep": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "event-holding-an-array-10000-deep": b'{"status":"started","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
}


@pytest.mark.parametrize("path", VOICE_PATHS)
@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
def test_a_body_nested_10000_deep_gets_no_5xx_and_no_traceback(server_factory, path, body):
    with server_factory() as server:
        response = server.send(WebRequest("POST", "", body, {"Content-Type": "application/json"}), path)
        assert_not_a_server_error(response)
        server.stored()
        server.assert_no_traceback()


# --- the call log, over whatever was stored -------------------------------------------------------------


def call_log_urls(conversation_uuids: list[str]) -> list[str]:
    urls = ["/api/calls", "/calls", "/calls?partial=list", "/calls?status=in_progress", "/calls?status=refused"]
    for uuid in conversation_uuids:
        urls += [f"/api/calls/{path_segment(uuid)}", f"/calls/{path_segment(uuid)}/timeline"]
    return urls


@BOTH_DATABASES
def test_call_log_api_and_page_never_fail_on_any_stored_event(server_factory, database_url):
    with server_factory() as server:
        server.client.set_cookie("call_log_token", CALL_LOG_TOKEN)

        @examples(1, database_url)
        @given(requests=st.lists(object_requests() | any_requests(), min_size=1, max_size=4))
        def readable(requests: list[WebRequest]):
            server.begin()
            server.empty_call_log()
            for request in requests:
                server.send(request, "/voice/event")
            listed = server.get("/api/calls?limit=200", AUTH)
            assert_not_a_server_error(listed)
            for url in call_log_urls([call["conversation_uuid"] for call in listed.get_json()["calls"]]):
                assert_not_a_server_error(server.get(url, AUTH))
            server.assert_no_traceback()

        readable()


def strict_json(text: str):
    """Parse JSON as RFC 8259 and JavaScript's JSON.parse do: NaN, Infinity and -Infinity are not JSON."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@BOTH_DATABASES
def test_call_log_api_answers_strict_json_whatever_was_stored(server_factory, database_url):
    """The API is for scripts: jq and JavaScript refuse NaN and Infinity, which Python's json writes by default."""
    with server_factory() as server:

        @examples(0.5, database_url)
        @given(requests=st.lists(object_requests(), min_size=1, max_size=3))
        def strict(requests: list[WebRequest]):
            server.begin()
            server.empty_call_log()
            for request in requests:
                server.send(request, "/voice/event")
            listed = server.get("/api/calls?limit=200", AUTH)
            strict_json(listed.get_data(as_text=True))
            for call in listed.get_json()["calls"]:
                strict_json(
                    server.get(f"/api/calls/{path_segment(call['conversation_uuid'])}", AUTH).get_data(as_text=True)
                )

        strict()


def seed_every_status(server: Server) -> None:
    for status in STATUSES:
        event = {"status": status, "uuid": status, "conversation_uuid": "CON-1", "timestamp": "t", "price": "0.1"}
        server.send(WebRequest("POST", "", json.dumps(event).encode()), "/voice/event")


@BOTH_DATABASES
def test_call_log_api_and_page_never_fail_on_any_query(server_factory, database_url):
    with server_factory() as server:
        seed_every_status(server)

        @examples(1, database_url)
        @given(query=raw_queries(), conversation=plain_text, path=st.sampled_from(["/api/calls", "/calls"]))
        def answered(query: str, conversation: str, path: str):
            server.begin()
            for url in [f"{path}?{query}", f"/api/calls/{path_segment(conversation)}?{query}"]:
                assert_not_a_server_error(server.get(url, AUTH))
            server.assert_no_traceback()

        answered()


ODD_CALL_LOG_URLS = [
    "/api/calls?cursor=W10",
    "/api/calls?limit=%EF%BC%95",
    "/api/calls?limit=" + "9" * 5000,
    "/api/calls?number=%00",
    "/api/calls?status=%00",
    "/api/calls?number=%25_%25",
    "/api/calls/%00",
    "/api/calls/%ED%BF%BF",
    "/calls?number=%00",
    "/calls?status=%00",
    "/calls/%00/timeline",
]


@BOTH_DATABASES
@pytest.mark.parametrize("url", ODD_CALL_LOG_URLS)
def test_call_log_answers_odd_urls_without_5xx(server_factory, url, database_url):
    with server_factory() as server:
        seed_every_status(server)
        assert_not_a_server_error(server.get(url, AUTH))
        server.assert_no_traceback()


def test_with_the_database_away_every_5xx_is_a_503_with_retry_after(server_factory):
    """Vonage retries an event on 503 (and 429, 504), not on 500; a person or a script reading the call log
    needs to know it is worth retrying too. Answers need no database: they stay 200."""
    with server_factory(DATABASE_URL="sqlite:////proc/no-such-folder/calls.db") as server:

        @examples(0.5)
        @given(request=object_requests(), path=st.sampled_from([*VOICE_PATHS, "/api/calls", "/calls/CON-1/timeline"]))
        def retry_later(request: WebRequest, path: str):
            server.begin()
            response = server.send(request, path, AUTH)
            assert_not_a_server_error(response, retry_after_allowed=True)
            if path in ANSWER_PATHS:
                assert response.status_code == 200 and parse_ncco(response.get_json())
            server.assert_no_traceback()

        retry_later()


# --- signed webhooks -------------------------------------------------------------------------------------


def vonage_get_payload(query: str) -> bytes:
    """What Vonage hashes for GET: the query parameters as compact JSON in their order, repeats as arrays."""
    params: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in params:
            params[key] = [*params[key], value] if isinstance(params[key], list) else [params[key], value]
        else:
            params[key] = value
    return json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode()


def signed_header(request: WebRequest, secret: str = SECRET, age: int = 0, **changes) -> dict[str, str]:
    """An Authorization header signed with PyJWT as Vonage signs webhooks, with `changes` to its claims."""
    payload = vonage_get_payload(request.query) if request.method == "GET" else request.body
    claims = {
        "iat": int(time.time()) - age,
        "jti": os.urandom(12).hex(),  # Vonage gives every request its own: a repeated one is a replay
        "iss": "Vonage",
        "api_key": "abcd1234",
        "payload_hash": hashlib.sha256(payload).hexdigest(),
        **changes,
    }
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(header: bytes, claims: bytes, secret: str = SECRET) -> str:
    signing_input = f"{b64url(header)}.{b64url(claims)}"
    return f"{signing_input}.{b64url(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())}"


# Deeper than Python's JSON parser goes from any stack depth, yet small enough for a 4096-character token.
DEEP_JSON = b"[" * 1450 + b"]" * 1450
GARBAGE_AUTHORIZATION = [
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Bearer a.b.c",
    "bearer ..",
    "Bearer " + "A" * 5000,
    "Bearer " + hs256_token(b'{"alg":"none"}', b"{}")[:-10],
    "Bearer " + hs256_token(DEEP_JSON, b"{}", "not-the-secret"),
    "Bearer " + hs256_token(b'{"alg":"HS256"}', b'{"iat":1,"x":' + DEEP_JSON + b"}"),
]


def forged_headers(request: WebRequest):
    """Authorization headers that are not a correct signature of `request` (or no header at all)."""
    other = WebRequest(request.method, request.query + "&x=1", request.body + b" ", request.headers)
    latin1 = st.binary(max_size=80).map(lambda raw: raw.decode("latin-1").replace("\r", "").replace("\n", ""))
    return st.one_of(
        st.one_of(latin1, st.sampled_from(GARBAGE_AUTHORIZATION)).map(lambda value: {"Authorization": value}),
        st.just(signed_header(request, secret="not-the-secret-0123456789abcdef0123")),
        st.just(signed_header(request, age=3600)),
        st.just(signed_header(request, age=-3600)),
        st.just(signed_header(other)),
        st.just(signed_header(request, iss="Mallory")),
        st.just(signed_header(request, iat=time.time())),
        st.just({}),
    )


def test_a_request_not_correctly_signed_gets_no_2xx_and_writes_nothing(server_factory):
    with server_factory(VONAGE_SIGNATURE_SECRET=SECRET) as server:

        @examples(3)
        @given(request=any_requests(), path=st.sampled_from(VOICE_PATHS), data=st.data())
        def refused(request: WebRequest, path: str, data):
            server.begin()
            headers = data.draw(forged_headers(request))
            before = server.stored()
            response = server.send(request, path, headers)
            assert_not_a_server_error(response, retry_after_allowed="Authorization" not in headers)
            assert not 200 <= response.status_code < 300, response.status_code
            assert server.stored() == before
            server.assert_no_traceback()

        refused()


def test_a_correctly_signed_request_is_processed(server_factory):
    timestamps = unique_timestamps()
    with server_factory(VONAGE_SIGNATURE_SECRET=SECRET) as server:

        @examples(1.5)
        @given(fields=event_objects(), path=st.sampled_from(VOICE_PATHS), data=st.data())
        def processed(fields: dict, path: str, data):
            server.begin()
            request = data.draw(object_requests(st.just({**fields, "timestamp": next(timestamps)})))
            events, answer_count = server.stored()
            response = server.send(request, path, signed_header(request))
            assert_not_a_server_error(response)
            if path == "/voice/event":
                assert 200 <= response.status_code < 300 and server.stored() == (events + 1, answer_count)
            else:
                assert response.status_code == 200 and parse_ncco(response.get_json())
                assert server.stored() == (events, answer_count + 1)
            server.assert_no_traceback()

        processed()


# --- the smallest reproductions of what the properties found ---------------------------------------------


def test_a_multipart_event_with_a_nameless_part_is_not_a_500(server_factory):
    """A part with no name parameter reaches the fields with the key None; with another key beside it, the
    event's identity (json.dumps with sort_keys) compared None with a str."""
    body = (
        b'--b0und\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        b"--b0und\r\nContent-Disposition: form-data\r\n\r\n2\r\n--b0und--\r\n"
    )
    with server_factory() as server:
        request = WebRequest("POST", "", body, {"Content-Type": "multipart/form-data; boundary=b0und"})
        assert_not_a_server_error(server.send(request, "/voice/event"))
        server.assert_no_traceback()


def test_a_cursor_nested_deeper_than_the_json_parser_goes_is_a_400(server_factory):
    cursor = b64url(DEEP_JSON)
    with server_factory() as server:
        assert server.get(f"/api/calls?cursor={cursor}", AUTH).status_code == 400
        server.assert_no_traceback()


@pytest.mark.parametrize("path", VOICE_PATHS)
def test_a_token_whose_header_is_nested_too_deeply_is_a_401(server_factory, path):
    """Before any signature is checked: anyone can send it. (signatures._header_algorithm caches its result by
    segment, so a header that once parsed, under a higher recursion limit, is refused from then on: this
    test's header is one no other test sends.)"""
    header = {"Authorization": "Bearer " + hs256_token(b"[" * 1440 + b"]" * 1440, b"{}", "anything")}
    with server_factory(VONAGE_SIGNATURE_SECRET=SECRET) as server:
        response = server.send(WebRequest("POST", "", b"{}", {"Content-Type": "application/json"}), path, header)
        assert response.status_code == 401
        server.assert_no_traceback()


@pytest.mark.parametrize("name", ["_method", "endpoint"])
def test_the_page_drops_the_token_from_the_address_whatever_else_the_query_holds(server_factory, name):
    """/calls?token= redirects with the other parameters as url_for() keywords: some names are url_for's own."""
    with server_factory() as server:
        response = server.get(f"/calls?token={CALL_LOG_TOKEN}&{name}=POST")
        assert response.status_code == 302
        server.assert_no_traceback()


@pytest.mark.parametrize("path", ANSWER_PATHS)
def test_custom_data_nested_deeper_than_the_json_parser_goes_is_refused_without_a_traceback(server_factory, path):
    """custom_data may be a JSON string, parsed by ncco.callee_from_answer, which catches ValueError only."""
    with server_factory() as server:
        response = server.send(WebRequest("GET", "custom_data=" + "%5B" * 1450 + "%5D" * 1450), path)
        assert response.status_code == 200 and parse_ncco(response.get_json())
        server.assert_no_traceback()


def test_an_event_with_nan_and_infinity_is_listed_as_strict_json(server_factory):
    body = b'{"status": "started", "uuid": "L", "conversation_uuid": "C", "timestamp": "t", "n": NaN, "i": 1e400}'
    with server_factory() as server:
        server.send(WebRequest("POST", "", body, {"Content-Type": "application/json"}), "/voice/event")
        strict_json(server.get("/api/calls/C", AUTH).get_data(as_text=True))


@BOTH_DATABASES
@pytest.mark.parametrize("field", ["from_user", "conversation_uuid", "uuid"])
def test_an_answer_decision_with_a_field_longer_than_its_column_is_recorded(server_factory, field, database_url):
    """PostgreSQL refuses text longer than a varchar column (100 characters here); SQLite stores it whole."""
    with server_factory() as server:
        before = server.stored()
        server.send(WebRequest("GET", f"to=447700900000&{field}={'a' * 101}"), "/voice/answer")
        assert server.stored() == (before[0], before[1] + 1)
        server.assert_no_traceback()


# --- POST /client/token: no request that fails authentication ever gets a token --------------------------------

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
CLIENT_AUTH_KEY = "fuzz-client-auth-key-0123456789abcdef0123456789"


@pytest.fixture
def login_settings(tmp_path):
    from support import keys

    path = tmp_path / "private.key"
    path.write_bytes(keys.pkcs8())
    return {"VONAGE_APPLICATION_ID": APPLICATION_ID, "VONAGE_PRIVATE_KEY": str(path)}


def forged_id_tokens(issuer) -> list[str]:
    """ID tokens that must not log anyone in: each wrong in one way, and a few wrong in every way."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = int(time.time())
    good = issuer.id_token("Alice")
    header, payload, signature = good.split(".")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return [
        issuer.id_token(iat=now - 7200, exp=now - 3600),
        issuer.id_token(iat=now + 3600, exp=now + 7200),
        issuer.id_token(nbf=now + 3600),
        issuer.id_token(iss="https://evil.example"),
        issuer.id_token(aud="another-app"),
        issuer.id_token(exp=None),
        issuer.id_token(sub=None),
        issuer.id_token(key_id="made-up-key"),
        issuer.unsigned_token(),
        issuer.hs256_with_public_key(),
        jwt.encode(issuer.claims("Alice"), stranger, algorithm="RS256", headers={"kid": issuer.key_id()}),
        f"{header}.{issuer.id_token('Mallory').split('.')[1]}.{signature}",
        f"{header}.{payload}.{signature[:-4]}AAAA",
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.x",
    ]


def made_up_jwts(issuer):
    """JWTs of any header and claims, with no signature, a garbage one, or a real one of another token."""
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        plain_text,
        st.lists(plain_text, max_size=2),
        st.sampled_from(["RS256", "ES256", "HS256", "none", "EdDSA", issuer.key_id(), issuer.url, "Alice"]),
    )
    headers = st.fixed_dictionaries({"alg": values}, optional={"kid": values, "typ": values, "crit": values})
    claims = st.dictionaries(st.sampled_from(["iss", "aud", "sub", "exp", "iat", "nbf"]), values, max_size=6)
    signatures = st.sampled_from(["", "AAAA", issuer.id_token("Alice").split(".")[2]])
    return st.builds(
        lambda header, claim, signature: (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claim).encode())}.{signature}"
        ),
        headers,
        claims,
        signatures,
    )


def refused_login(response) -> None:
    assert_not_a_server_error(response, retry_after_allowed=True)
    assert response.status_code != 200, response.get_data(as_text=True)[:300]
    assert b'"token"' not in response.get_data(), response.get_data(as_text=True)[:300]


@pytest.mark.parametrize("mode", ["key", "oidc"])
def test_no_request_that_fails_authentication_ever_gets_a_token(server_factory, issuer, login_settings, mode):
    from support.oidc_issuer import AUDIENCE

    settings = {"CLIENT_AUTH": "key", "CLIENT_AUTH_KEY": CLIENT_AUTH_KEY} if mode == "key" else {}
    if mode == "oidc":
        settings = {"CLIENT_AUTH": "oidc", "CLIENT_AUTH_ISSUER": issuer.url, "CLIENT_AUTH_AUDIENCE": AUDIENCE}
    forged = [*GARBAGE_AUTHORIZATION, *(f"Bearer {token}" for token in forged_id_tokens(issuer))]
    forged += [f"Bearer {CLIENT_AUTH_KEY[:-1]}", f"Bearer {CLIENT_AUTH_KEY}x", f"Basic {CLIENT_AUTH_KEY}"]
    latin1 = st.binary(max_size=80).map(lambda raw: raw.decode("latin-1").replace("\r", "").replace("\n", ""))
    made_up = made_up_jwts(issuer).map(lambda token: f"Bearer {token}")
    bearers = st.one_of(latin1, st.sampled_from(forged), made_up, made_up)
    headers = st.one_of(st.just({}), bearers.map(lambda value: {"Authorization": value}))
    with server_factory(**login_settings, **settings) as server:

        @examples(1)
        @given(request=any_requests(methods=("POST",)), headers=headers)
        def no_token(request: WebRequest, headers: dict):
            server.begin()
            refused_login(server.send(request, "/client/token", headers))
            server.assert_no_traceback()

        no_token()


@pytest.mark.parametrize("mode", ["key", "oidc"])
def test_a_proven_user_gets_a_token_for_exactly_that_name_or_a_400(server_factory, issuer, login_settings, mode):
    from support import keys
    from support.oidc_issuer import AUDIENCE

    if mode == "key":
        settings = {"CLIENT_AUTH": "key", "CLIENT_AUTH_KEY": CLIENT_AUTH_KEY}
    else:
        settings = {"CLIENT_AUTH": "oidc", "CLIENT_AUTH_ISSUER": issuer.url, "CLIENT_AUTH_AUDIENCE": AUDIENCE}
    with server_factory(**login_settings, **settings) as server:

        @examples(0.5)
        @given(user=plain_text)
        def exactly_that_name(user: str):
            server.begin()
            if mode == "key":
                request = WebRequest(
                    "POST", "", json.dumps({"user": user}).encode(), {"Content-Type": "application/json"}
                )
                response = server.send(request, "/client/token", {"Authorization": f"Bearer {CLIENT_AUTH_KEY}"})
            else:
                token = issuer.id_token(user)
                response = server.send(WebRequest("POST"), "/client/token", {"Authorization": f"Bearer {token}"})
            # An empty claim names nobody: the ID token is refused as without one.
            expected = (401,) if mode == "oidc" and user == "" else (200, 400)
            assert response.status_code in expected, response.get_data(as_text=True)[:300]
            if response.status_code == 200:
                claims = jwt.decode(response.get_json()["token"], keys.rsa_key().public_key(), algorithms=["RS256"])
                assert claims["sub"] == user == response.get_json()["user"]
            server.assert_no_traceback()

        exactly_that_name()


@pytest.mark.parametrize("alg", [["RS256"], {"RS256": 1}, 256, None, "x" * 5000])
def test_an_id_token_whose_alg_is_not_a_name_is_a_401(server_factory, issuer, login_settings, alg):
    """An `alg` that was a list reached a dict lookup and was a 500 (unhashable); a long one filled the log."""
    from support.oidc_issuer import AUDIENCE

    header = b64url(json.dumps({"alg": alg, "kid": issuer.key_id()}).encode())
    token = f"{header}.{b64url(json.dumps(issuer.claims()).encode())}.AAAA"
    settings = {"CLIENT_AUTH": "oidc", "CLIENT_AUTH_ISSUER": issuer.url, "CLIENT_AUTH_AUDIENCE": AUDIENCE}
    with server_factory(**login_settings, **settings) as server:
        response = server.send(WebRequest("POST"), "/client/token", {"Authorization": f"Bearer {token}"})
        assert response.status_code == 401 and len(response.get_json()["error"]) < 300
        server.assert_no_traceback()
