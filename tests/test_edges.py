"""The production server's edges (issue #24), attacked from outside as `make run` serves: slow and stalled bodies,
replayed tokens, unsigned query fields on a signed POST, chunked bodies over the limit or cut short.

Slow bodies: N connections (1, 4, 50, 1,000) each send complete headers and then their body a byte a second,
signed (a valid token for the body they never finish) and unsigned. While they wait, answers and events from
another client must all succeed within PROBE_SECONDS, and each slow connection must get a 408 and be closed
once edge.BODY_SECONDS has passed.
"""

from __future__ import annotations

import json
import re
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from calllog.schema import Database
from edge.rsgi import BODY_SECONDS
from edge.signatures import sign_webhook
from support.production import CALLEE, SECRET, event_payload, running_server, signed_answer, signed_event, wait_until

SLOW_COUNTS = (1, 4, 50, 1000)
PROBES = 10  # answers and events, each, per count
PROBE_SECONDS = 1.0
BYTE_EVERY_SECONDS = 1.0
CLOSED_WITHIN_SECONDS = BODY_SECONDS + 4
SLOW_BODY = json.dumps({**event_payload("slow", 0), "padding": "x" * 100}).encode()


def raise_own_descriptor_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


@dataclass
class SlowBodies:
    """`count` connections that send their headers, then their body a byte every BYTE_EVERY_SECONDS."""

    port: int
    count: int
    signed: bool
    connections: dict[socket.socket, int] = field(default_factory=dict)  # -> bytes of the body sent
    answered: dict[socket.socket, bytes] = field(default_factory=dict)  # -> the response's first line
    closed_at: dict[socket.socket, float] = field(default_factory=dict)
    opened_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def head(self) -> bytes:
        lines = [
            "POST /voice/event HTTP/1.1",
            "Host: 127.0.0.1",
            "Content-Type: application/json",
            f"Content-Length: {len(SLOW_BODY)}",
        ]
        if self.signed:
            lines.append("Authorization: " + sign_webhook(SECRET, "POST", SLOW_BODY, [], time.time()))
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def start(self) -> None:
        self.selector = selectors.DefaultSelector()
        head = self.head()
        for _ in range(self.count):
            connection = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            connection.sendall(head + SLOW_BODY[:1])
            connection.setblocking(False)
            self.connections[connection] = 1
            self.selector.register(connection, selectors.EVENT_READ)
        self.opened_at = time.monotonic()
        self.thread = threading.Thread(target=self._drive, daemon=True)
        self.thread.start()

    def _drive(self) -> None:
        next_byte = time.monotonic() + BYTE_EVERY_SECONDS
        while not self._stop.is_set() and len(self.closed_at) < self.count:
            for key, _ in self.selector.select(timeout=0.05):
                self._read(key.fileobj)
            if time.monotonic() >= next_byte:
                next_byte += BYTE_EVERY_SECONDS
                for connection, sent in list(self.connections.items()):
                    if connection in self.closed_at or sent >= len(SLOW_BODY) - 1:
                        continue  # the body's last byte is never sent
                    try:
                        connection.send(SLOW_BODY[sent : sent + 1])
                        self.connections[connection] = sent + 1
                    except OSError:
                        self._closed(connection)

    def _read(self, connection: socket.socket) -> None:
        try:
            data = connection.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.answered.setdefault(connection, data.split(b"\r\n", 1)[0])
            return
        self._closed(connection)

    def _closed(self, connection: socket.socket) -> None:
        if connection not in self.closed_at:
            self.closed_at[connection] = time.monotonic()
            self.selector.unregister(connection)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)
        for connection in self.connections:
            connection.close()
        self.selector.close()


def probe(session: requests.Session, base_url: str, index: int) -> tuple[float, str]:
    """One signed answer and one signed event: the slower one's time, and what went wrong ("" if nothing)."""
    path, headers = signed_answer(index)
    problems, slowest = [], 0.0
    started = time.monotonic()
    try:
        answer = session.get(f"{base_url}{path}", headers=headers, timeout=5)
        if answer.status_code != 200 or CALLEE not in answer.text:
            problems.append(f"answer {answer.status_code}")
    except requests.RequestException as error:
        problems.append(f"answer: {type(error).__name__}")
    slowest = time.monotonic() - started
    body, headers = signed_event(event_payload(f"probe-{time.monotonic_ns()}", index))
    started = time.monotonic()
    try:
        event = session.post(f"{base_url}/voice/event", data=body, headers=headers, timeout=5)
        if event.status_code != 204:
            problems.append(f"event {event.status_code}")
    except requests.RequestException as error:
        problems.append(f"event: {type(error).__name__}")
    return max(slowest, time.monotonic() - started), "; ".join(problems)


@pytest.fixture(scope="module", params=["signed", "unsigned"])
def server(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"edges-{request.param}")
    settings = {} if request.param == "signed" else {"VONAGE_SIGNATURE_SECRET": ""}
    with running_server(folder, f"sqlite:///{folder / 'calls.db'}", **settings) as running:
        running.signed = request.param == "signed"
        yield running


@pytest.mark.parametrize("count", SLOW_COUNTS)
def test_slow_bodies_delay_no_other_request_and_are_cut_off(server, count):
    raise_own_descriptor_limit(count + 256)
    slow = SlowBodies(server.port, count, server.signed)
    slow.start()
    try:
        with requests.Session() as session:
            results = [probe(session, server.url, index) for index in range(PROBES)]
        wait_until(lambda: len(slow.closed_at) == count, CLOSED_WITHIN_SECONDS + 5, "every slow body cut off")
    finally:
        slow.stop()
    seconds = [elapsed for elapsed, _ in results]
    problems = [problem for _, problem in results if problem]
    waited = sorted(closed - slow.opened_at for closed in slow.closed_at.values())
    statuses = sorted(set(slow.answered.values()))
    figures = (
        f"{count} slow bodies ({'signed' if server.signed else 'unsigned'}): {PROBES} answers and {PROBES} events "
        f"alongside, slowest {max(seconds) * 1000:.0f} ms, {len(problems)} failed; the slow ones answered {statuses} "
        f"and closed after {waited[0]:.1f}-{waited[-1]:.1f} s"
    )
    print(f"\n{figures}")
    assert not problems, f"{problems[:3]}; {figures}"
    assert max(seconds) < PROBE_SECONDS, figures
    assert statuses == [b"HTTP/1.1 408 Request Timeout"], figures
    assert len(slow.answered) == count, figures
    assert waited[-1] < CLOSED_WITHIN_SECONDS, figures
    assert waited[0] >= BODY_SECONDS - 1, f"cut off before its time; {figures}"


def raw_exchange(port: int, data: bytes, close_writing: bool = False) -> bytes:
    """Send `data` on a new connection (then, with `close_writing`, end the sending side); the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSED_WITHIN_SECONDS) as connection:
        connection.sendall(data)
        if close_writing:
            connection.shutdown(socket.SHUT_WR)
        response = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            response += chunk
            if b"\r\n\r\n" in response and b"connection: close" not in response.lower():
                head, _, rest = response.partition(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head.lower())
                if length is None or len(rest) >= int(length.group(1)):
                    break
    return response


def chunked_head(body: bytes, signed: bool) -> bytes:
    """The head of a chunked POST /voice/event of `body`, signed for it on a server that checks signatures."""
    signature = f"Authorization: {sign_webhook(SECRET, 'POST', body, [], time.time())}\r\n" if signed else ""
    return (
        "POST /voice/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{signature}Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_chunked_body_over_the_limit_is_refused_with_413(server):
    body = b'{"padding": "' + b"x" * 70_000 + b'"}'
    pieces = b"".join(chunk(body[start : start + 8192]) for start in range(0, len(body), 8192))
    response = raw_exchange(server.port, chunked_head(body, server.signed) + pieces + b"0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 413 "), response[:300]
    assert b"over the limit" in response, response[:300]


def test_a_chunked_body_cut_short_is_refused_with_400(server):
    body, _ = signed_event(event_payload("cut-chunked", 0))
    response = raw_exchange(server.port, chunked_head(body, server.signed) + chunk(body[:20]), close_writing=True)
    assert response.startswith(b"HTTP/1.1 400 "), response[:300]


def test_a_body_shorter_than_its_content_length_is_refused_with_400(server):
    body, headers = signed_event(event_payload("cut-length", 0))
    head = (
        f"POST /voice/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    response = raw_exchange(server.port, head + body[:20], close_writing=True)
    assert response.startswith(b"HTTP/1.1 400 "), response[:300]


def test_a_whole_chunked_event_is_stored(server):
    body, _ = signed_event(event_payload("whole-chunked", 0))
    pieces = chunk(body[:10]) + chunk(body[10:]) + b"0\r\n\r\n"
    response = raw_exchange(server.port, chunked_head(body, server.signed) + pieces)
    assert response.startswith(b"HTTP/1.1 204 "), response[:300]


# --- replays and unsigned query fields: signatures on, two servers on one database -------------------------


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replays")
    database_url = f"sqlite:///{folder / 'calls.db'}"
    with running_server(folder / "a", database_url) as first, running_server(folder / "b", database_url) as second:
        yield first, second


def answer_rows(database_url: str, conversation: str) -> list[dict]:
    database = Database(database_url)
    try:
        with database.engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT route, callee, requested, verified FROM answers WHERE conversation_uuid = ?", (conversation,)
            )
            return [dict(row._mapping) for row in rows]
    finally:
        database.close()


def stored_payloads(database_url: str, leg: str) -> list[dict]:
    database = Database(database_url)
    try:
        with database.engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT payload FROM events WHERE leg_uuid = ?", (leg,)).all()
            return [json.loads(payload) for (payload,) in rows]
    finally:
        database.close()


def replays_counted(url: str) -> float:
    metrics = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer production-suites-call-log-token"})
    found = re.search(r"^voice_answer_replays_total (\S+)$", metrics.text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_replayed_answer_token_is_answered_alike_but_recorded_once_across_workers_and_servers(two_servers):
    first, second = two_servers
    path, headers = signed_answer(900_001)
    conversation = "CON-a-900001"
    bodies = []
    # A new connection each time, so that both workers of each server take some of them.
    for server in (first, first, first, first, second, second):
        response = requests.get(f"{server.url}{path}", headers={**headers, "Connection": "close"}, timeout=5)
        assert response.status_code == 200, response.text
        bodies.append(response.text.replace(f":{server.port}/", ":PORT/"))  # the connect's eventUrl names the server
    assert len(set(bodies)) == 1 and CALLEE in bodies[0], bodies
    wait_until(lambda: replays_counted(first.url) + replays_counted(second.url) >= 5, 10, "5 replays counted")
    rows = answer_rows(first.database_url, conversation)
    assert len(rows) == 1, rows
    assert replays_counted(first.url) + replays_counted(second.url) == 5


def test_a_signed_post_answer_ignores_the_query_it_was_not_signed_with(two_servers):
    first, _ = two_servers
    fields = {"to": CALLEE, "from_user": "Alice", "uuid": "post-q", "conversation_uuid": "CON-post-query"}
    body = json.dumps(fields).encode()
    headers = {"Content-Type": "application/json", "Authorization": sign_webhook(SECRET, "POST", body, [], time.time())}
    response = requests.post(f"{first.url}/voice/answer?to=447700900999", data=body, headers=headers, timeout=5)
    assert response.status_code == 200
    numbers = [endpoint["number"] for action in response.json() for endpoint in action.get("endpoint", [])]
    assert numbers == [CALLEE], response.text
    wait_until(lambda: answer_rows(first.database_url, "CON-post-query"), 10, "the answer recorded")
    assert answer_rows(first.database_url, "CON-post-query") == [
        {"route": "answer", "callee": CALLEE, "requested": CALLEE, "verified": 1}
    ]


def test_a_signed_event_ignores_query_fields_it_was_not_signed_with(two_servers):
    first, _ = two_servers
    payload = {**event_payload("query", 3), "uuid": "leg-query-fields"}
    body, headers = signed_event(payload)
    response = requests.post(
        f"{first.url}/voice/event?price=99.99&status=failed", data=body, headers=headers, timeout=5
    )
    assert response.status_code == 204
    stored = stored_payloads(first.database_url, "leg-query-fields")
    assert stored == [payload], stored
