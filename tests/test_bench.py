"""The benchmark (bench/): it must measure requests that were served and stored, never error paths.

The wrk tests run one short round, through the function `make bench` uses, against a small local HTTP server.
"""

import contextlib
import json
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import inprocess, run
from conftest import CALL_LOG_TOKEN, built_app, call_log_reader
from support.needs import unavailable


def test_the_in_process_measurement_serves_and_stores_every_request(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite://")  # restored afterwards; main points the writer elsewhere
    monkeypatch.setattr(inprocess, "WARM_UP", 5)
    costs = inprocess.main(tmp_path, 20)
    assert set(costs) == {"cheapest", "answer", "event"}
    assert all(cost > 0 for cost in costs.values())
    # Every signed event of the warm-up and the measured batch went through the writer into the database.
    with call_log_reader(f"sqlite:///{tmp_path / 'inprocess.db'}") as reader:
        assert reader.count_events() == 25


def test_a_refused_request_fails_the_measurement(tmp_path):
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
        "CALL_LOG_TOKEN": CALL_LOG_TOKEN,
        "VONAGE_SIGNATURE_SECRET": "not-the-bench-secret-0123456789abcdef",
    }
    with built_app(config) as app, pytest.raises(SystemExit, match="2 requests were refused .first: 401"):
        inprocess.cpu_per_request(app.wsgi_app, inprocess.environs("answer", 2))


def require_wrk() -> None:
    if shutil.which("wrk"):
        return
    message = "the benchmark's wrk tests need wrk: `apt-get install wrk`"
    unavailable(message)


class QuietServer(ThreadingHTTPServer):
    request_queue_size = 64  # wrk opens all its connections at once; the default backlog of 5 would drop some

    def handle_error(self, request, client_address):
        """wrk drops its connections mid-request when a round ends; that is not a failure of the test."""


@contextlib.contextmanager
def local_server(status: int):
    """An HTTP/1.1 server on a free port answering `status` to well-formed requests (400 to the rest).

    Well-formed means what Express insists on: a Host header naming the server, and a body exactly as long as its
    Content-Length. Yields the base URL and the list of (method, path, Authorization, body) received.
    """
    received: list[tuple[str, str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
        disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would hold the second

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            well_formed = self.headers.get("Host") == f"127.0.0.1:{self.server.server_port}" and len(body) == length
            received.append((self.command, self.path, self.headers.get("Authorization", ""), body))
            text = b"ok" if well_formed else b"bad request"
            self.send_response(status if well_formed else 400)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        do_GET = do_POST = answer

        def log_message(self, format, *args):
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()


def request_file(tmp_path, count: int = 100_000):
    """Distinct GETs and POSTs with JSON bodies, more than a Python server can answer in one second."""
    lines = []
    for index in range(count):
        if index % 2:
            lines.append(f"POST\t/voice/event\tBearer token-{index}\t{json.dumps({'uuid': f'leg-{index}'})}")
        else:
            lines.append(f"GET\t/voice/answer?to=447700900000&uuid=in-{index}\tBearer token-{index}\t")
    return run.write_requests(tmp_path / "requests.tsv", lines)


def test_a_server_answering_400_fails_the_round_and_shows_the_status_counts(tmp_path):
    require_wrk()
    with local_server(400) as (url, received), pytest.raises(run.BenchFailed) as failure:
        run.wrk_round(url, request_file(tmp_path), "the test round", seconds=1)
    counts = re.search(
        r"([\d,]+) of ([\d,]+) responses were not 2xx; responses by status: 400: ([\d,]+);", str(failure.value)
    )
    assert counts and counts[1] == counts[2] == counts[3] != "0"
    assert received


def test_a_round_of_well_formed_requests_all_answered_2xx_is_accepted(tmp_path):
    require_wrk()
    with local_server(200) as (url, received):
        figures = run.wrk_round(url, request_file(tmp_path), "the test round", seconds=1)
    assert figures["statuses"] == {"200": figures["requests"]}
    assert figures["requests"] > 0 and figures["rps"] > 0
    # Each request line went out at most once, and POSTs carried their JSON and its type.
    assert len(set(received)) == len(received)
    assert all(body.startswith(b'{"uuid"') for method, _, _, body in received if method == "POST")


def test_a_round_counts_the_connections_each_server_process_held(tmp_path):
    require_wrk()
    with local_server(200) as (url, _):
        # This process serves the round; a process that holds none of its connections counts 0.
        figures = run.wrk_round(
            url, request_file(tmp_path), "the test round", seconds=1, connections_of=[os.getpid(), 1]
        )
    assert figures["connections"] == [run.CONNECTIONS, 0]


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1
   1: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1002 1
   2: 0100007F:D431 0100007F:0BB8 01 00000000:00000000 00:00000000 00000000     0        0 1003 1
   3: 0100007F:0BB8 0100007F:D432 06 00000000:00000000 00:00000000 00000000     0        0 1004 1
   4: 0100007F:0BB9 0100007F:D433 01 00000000:00000000 00:00000000 00000000     0        0 1005 1
"""


def test_only_established_connections_to_the_server_port_are_counted():
    # Port 3000 is 0BB8: the listener (0A), the client's end (local port D431), a connection in TIME_WAIT (06)
    # and one on another port are not the server's open connections.
    assert run.established_inodes(TCP_TABLE, 3000) == {"1002"}


def test_the_event_figure_shows_how_the_connections_were_split_between_the_workers():
    ours = side(run.US, [1000, 1000], 2000)
    ours.rounds["event"] = [
        {"rps": 900, "p50_us": 1, "p99_us": 2, "connections": [4, 12]},
        {"rps": 950, "p50_us": 1, "p99_us": 2, "connections": [8, 8]},
    ]
    lines = run.figure_lines("event", [ours])
    assert "its 16 connections per worker, round by round: 12/4, 8/8" in lines[2]


@pytest.mark.parametrize(
    "statuses, errors, shown",
    [
        ({"200": 90, "503": 10}, {}, "10 of 100 responses were not 2xx; responses by status: 200: 90, 503: 10"),
        ({"200": 100}, {"read": 3}, "socket errors: read 3"),
        ({"204": 100}, {"timeout": 1}, "socket errors: timeout 1"),
        ({}, {}, "responses by status: no response"),
    ],
)
def test_a_round_with_any_refusal_or_socket_error_is_not_valid(statuses, errors, shown):
    figures = {"statuses": statuses, "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, **errors}}
    with pytest.raises(run.BenchFailed, match="is not valid") as failure:
        run.check_round(figures, "a round")
    assert shown in str(failure.value)


def side(name: str, answers_rps: list[float], p99_us: float) -> run.Side:
    fake = run.Side(name, "http://127.0.0.1:1", None, "workers", 0.0)
    fake.rounds["answer"] = [{"rps": rps, "p99_us": p99_us} for rps in answers_rps]
    return fake


def test_the_answer_target_needs_the_ratio_and_the_p99():
    theirs = side(run.TUTORIAL, [1000, 1000, 1000], 2000)
    passing = run.ratio_lines("answer", [side(run.US, [1400, 1600, 1700], 9000), theirs])
    assert "1.60x (of the medians); the rounds' ratios 1.40x to 1.70x" in passing[0]
    assert passing[1].endswith("PASS")
    assert run.ratio_lines("answer", [side(run.US, [1600, 1600, 1600], 11000), theirs])[1].endswith("FAIL")
    assert run.ratio_lines("answer", [side(run.US, [1400, 1400, 1400], 9000), theirs])[1].endswith("FAIL")
    assert run.ratio_lines("answer", [side(run.US, [1600], 9000)])[0].endswith("not measured (no tutorial server)")


def forwarding_sides(plain_rps: float, forwarding_rps: float) -> tuple[run.Side, run.Side]:
    plain = run.Side(run.US, "", None, "workers", 0.1)
    plain.rounds["event"] = [{"rps": plain_rps}]
    forwarding = run.Side(run.FORWARDING, "", None, "workers", 0.1, figures=("event",))
    forwarding.rounds["event"] = [{"rps": forwarding_rps}]
    return plain, forwarding


def test_the_forwarding_figure_shows_the_events_rate_beside_the_rate_without_it():
    plain, forwarding = forwarding_sides(4000, 3000)
    delivery = {"stored": 500, "received": 500, "requests": 503, "unverified": 0, "after_rounds_s": 1.5}
    forwarding.drains = [12.5, 30.25]
    lines = run.forwarding_lines(plain, forwarding, delivery)
    assert "3,000 events/s against 4,000 without it (0.75x)" in lines[0]
    assert "drained within 30.2 s of its end" in lines[1]
    assert "lost 0" in lines[1] and lines[-1].endswith("PASS")


@pytest.mark.parametrize(
    "delivery",
    [
        {"stored": 500, "received": 499, "requests": 499, "unverified": 0, "after_rounds_s": 300.0},
        {"stored": 500, "received": 500, "requests": 501, "unverified": 1, "after_rounds_s": 1.0},
    ],
)
def test_a_stored_event_not_delivered_or_a_message_not_verified_fails_the_forwarding_figure(delivery):
    lines = run.forwarding_lines(*forwarding_sides(4000, 3000), delivery)
    assert lines[-1].endswith("FAIL")


def test_the_forwarding_side_is_measured_on_events_only_and_left_out_of_the_ratio_with_the_tutorial():
    plain, forwarding = forwarding_sides(4000, 3000)
    plain.rounds["answer"] = [{"rps": 8000, "p99_us": 5000}]
    assert run.ratio_lines("answer", [plain, forwarding])[0].endswith("not measured (no tutorial server)")


def test_the_bench_receiver_counts_each_verified_message_once_and_the_delivery_check_sees_them(tmp_path):
    import subprocess
    import sys
    import time

    import requests
    from prometheus_client import CollectorRegistry

    from calllog.committer import Committer
    from calllog.rows import event_row
    from calllog.schema import Database
    from events import Payload
    from outbound.signing import Signer, envelope
    from runtime.metrics import Metrics
    from support.servers import free_port, wait_until_listening

    database_url = f"sqlite:///{tmp_path / 'forwarding.db'}"
    database = Database(database_url)
    rows = [
        event_row(Payload({"status": "started", "uuid": f"l{n}", "timestamp": f"T{n}"}), "R", True) for n in range(3)
    ]
    committer = Committer(database, Metrics(CollectorRegistry()))
    committer.commit(rows, [])
    committer.close()
    database.close()
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port), run.FORWARD_SECRET], cwd=run.ROOT)
    try:
        wait_until_listening(port, receiver)
        signer = Signer((run.FORWARD_SECRET,))
        for row in [*rows, rows[0]]:  # the first one twice: counted once
            body = envelope("call.event.completed", "R", {})
            headers = signer.headers(row.event_key, body, time.time())
            assert requests.post(f"http://127.0.0.1:{port}/e", data=body, headers=headers, timeout=5).status_code == 204
        forged = {**headers, "webhook-signature": "v1,bm9wZQ=="}
        assert requests.post(f"http://127.0.0.1:{port}/e", data=body, headers=forged, timeout=5).status_code == 400
        side = run.Side(run.FORWARDING, "", None, "workers", 0.1, database_url=database_url)
        delivery = run.delivery_check(side, f"http://127.0.0.1:{port}", seconds=5)
    finally:
        receiver.kill()
        receiver.wait()
    assert (delivery["stored"], delivery["received"], delivery["requests"], delivery["unverified"]) == (3, 3, 5, 1)
