"""GET /metrics: the token, every metric counted exactly (read back with prometheus_client's own parser), and the
production server's workers and writer adding up in prometheus_client's multi-process mode."""

import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from config import settings_from
from conftest import CALL_LOG_TOKEN, ROOT, built_app
from edge import voice
from edge.signatures import REFUSAL_CODES, sign_webhook
from events import FINAL_STATUSES
from ncco import WEBHOOKS
from runtime.metrics import FLUSH_SECONDS, OUTCOMES, Tally
from serve import startup_notes
from support.pg import database_url_for
from support.production import (
    CALL_LOG_TOKEN as PRODUCTION_TOKEN,
)
from support.production import (
    event_payload,
    running_server,
    signed_answer,
    signed_event,
    start_server,
    stop_group,
    wait_until,
)

SECRET = "metrics-signature-secret-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}
CALLEE = "447700900000"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return database_url_for(request.param, tmp_path)


@pytest.fixture
def settings_env():
    return {"VONAGE_SIGNATURE_SECRET": SECRET}


# Reading a scrape.


def parsed(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, parsed by prometheus_client: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_label(samples: dict, name: str, label: str, **only) -> dict[str, float]:
    """The values of sample `name`, by the value of `label` (among samples whose other labels are `only`)."""
    found = {}
    for (sample, labels), value in samples.items():
        labels = dict(labels)
        if sample == name and all(labels.get(key) == wanted for key, wanted in only.items()):
            found[labels[label]] = value
    return found


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(samples: dict, name: str) -> float:
    """A metric's samples added up over all their labels."""
    return sum(count for (sample, _), count in samples.items() if sample == name)


def scrape(client) -> dict:
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.get_data(as_text=True)
    return parsed(response.get_data(as_text=True))


def zeros(names, **counted) -> dict[str, float]:
    return {name: counted.get(name, 0.0) for name in names}


# Requests as Vonage signs them (and as it would not).


def answer(client, fields: dict, secret: str = SECRET):
    pairs = list(fields.items())
    headers = {"Authorization": sign_webhook(secret, "GET", b"", pairs, time.time())}
    return client.get(f"/voice/answer?{urlencode(pairs)}", headers=headers)


def post(client, path: str, body: bytes, secret: str = SECRET, signed_body: bytes | None = None, now=None):
    authorization = sign_webhook(secret, "POST", body if signed_body is None else signed_body, [], now or time.time())
    return client.post(path, data=body, headers={"Authorization": authorization, "Content-Type": "application/json"})


def leg_event(leg: str, status: str, second: int) -> bytes:
    fields = {
        "uuid": leg,
        "conversation_uuid": f"CON-{leg}",
        "status": status,
        "direction": "outbound",
        "from": "Alice",
        "to": CALLEE,
        "timestamp": f"2026-11-24T10:00:{second:02d}.000Z",
    }
    return json.dumps(fields).encode()


# The endpoint.


def test_metrics_without_the_token_is_401_with_one_json_line_naming_the_fix(client):
    for headers, query in (({}, ""), ({"Authorization": "Bearer wrong-token-0123456789"}, ""), ({}, "?token=nope")):
        response = client.get(f"/metrics{query}", headers=headers)
        assert response.status_code == 401
        error = response.get_json()["error"]
        assert "Authorization: Bearer <token>" in error and "CALL_LOG_TOKEN" in error
        assert len(response.get_data(as_text=True).strip().splitlines()) == 1


def test_metrics_with_the_token_as_bearer_is_the_prometheus_text_format(client):
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response.content_type == CONTENT_TYPE_PLAIN_0_0_4
    families = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"voice_webhooks", "voice_commit_batch_size", "voice_calls_ended"} <= families
    # The token in the address is refused (it ends up in logs): the header is the one way in.
    assert client.get(f"/metrics?token={CALL_LOG_TOKEN}").status_code == 401


# Each metric, counted exactly.


def test_webhooks_are_counted_by_route_and_outcome(client):
    assert answer(client, {"to": CALLEE, "from_user": "Alice"}).status_code == 200
    assert answer(client, {"to": CALLEE, "from_user": "Alice"}).status_code == 200
    assert client.get(f"/voice/answer?to={CALLEE}").status_code == 503  # unsigned
    assert post(client, "/voice/event", leg_event("leg-1", "started", 0)).status_code == 204
    assert post(client, "/voice/event", b"{not json").status_code == 400
    assert post(client, "/voice/event", leg_event("leg-1", "ringing", 1), secret="another-secret").status_code == 401
    assert client.put("/voice/fallback").status_code == 405
    samples = scrape(client)
    assert by_label(samples, "voice_webhooks_total", "outcome", route="answer") == zeros(OUTCOMES, ok=2, refused=1)
    assert by_label(samples, "voice_webhooks_total", "outcome", route="event") == zeros(
        OUTCOMES, ok=1, bad_request=1, refused=1
    )
    assert by_label(samples, "voice_webhooks_total", "outcome", route="fallback") == zeros(OUTCOMES, bad_request=1)
    assert by_label(samples, "voice_webhooks_total", "outcome", route="connect") == zeros(OUTCOMES)
    assert set(by_label(samples, "voice_webhooks_total", "route")) == {webhook.name for webhook in WEBHOOKS}


def test_an_unexpected_error_is_counted_as_error_even_when_the_caller_hears_a_sentence(client, monkeypatch):
    def broken(*_):
        raise RuntimeError("a bug")

    monkeypatch.setattr(voice, "decide_answer", broken)
    assert answer(client, {"to": CALLEE, "from_user": "Alice"}).status_code == 200
    assert by_label(scrape(client), "voice_webhooks_total", "outcome", route="answer") == zeros(OUTCOMES, error=1)


def test_signature_refusals_are_counted_by_a_reason_from_a_fixed_set(client):
    body = leg_event("leg-1", "started", 0)
    client.post("/voice/event", data=body)  # unsigned
    post(client, "/voice/event", body, secret="another-secret")  # bad_signature
    post(client, "/voice/event", body, signed_body=b"{}")  # payload_mismatch
    post(client, "/voice/event", body, now=time.time() - 3600)  # stale
    post(client, "/voice/event", body, now=time.time() - 3600)
    client.post("/voice/event", data=body, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})  # not_bearer
    refusals = by_label(scrape(client), "voice_signature_refusals_total", "reason")
    assert refusals == zeros(REFUSAL_CODES, unsigned=1, bad_signature=1, payload_mismatch=1, stale=2, not_bearer=1)


def test_answer_decisions_are_counted_by_outcome_and_call_shape(client):
    answer(client, {"to": CALLEE, "from_user": "Alice"})  # connected, outbound
    answer(client, {"to": CALLEE, "from_user": "Alice"})
    answer(client, {"to": "+449098790000", "from_user": "Alice"})  # refused: premium rate
    answer(client, {"to": "Bob", "from_user": "Alice"})  # refused: Bob is not in CALLABLE_USERS
    answer(client, {"from": "447700900123", "to": "447700900001"})  # refused: no app user takes the call
    post(client, "/voice/answer", b"{not json")  # unreadable
    busy = leg_event("leg-2", "busy", 5)
    assert post(client, "/voice/event/connect", busy).status_code == 200  # told why
    assert post(client, "/voice/event/connect", busy).status_code == 200  # a repeated delivery: told, not counted
    samples = scrape(client)
    assert by_label(samples, "voice_answer_decisions_total", "shape", outcome="connected") == {
        "outbound": 2,
        "inbound": 0,
        "app-to-app": 0,
    }
    assert by_label(samples, "voice_answer_decisions_total", "shape", outcome="refused") == {
        "outbound": 1,
        "inbound": 1,
        "app-to-app": 1,
    }
    assert value(samples, "voice_answer_decisions_total", outcome="unreadable", shape="unknown") == 1
    assert value(samples, "voice_answer_decisions_total", outcome="told_why", shape="unknown") == 1


def test_events_stored_and_repeated_and_each_commit_in_the_histograms(client):
    statuses = ("started", "ringing", "answered", "completed")
    for second, status in enumerate(statuses):
        assert post(client, "/voice/event", leg_event("leg-1", status, second)).status_code == 204
    assert post(client, "/voice/event", leg_event("leg-1", "ringing", 1)).status_code == 204  # delivered again
    samples = scrape(client)
    assert value(samples, "voice_events_stored_total") == 4
    assert value(samples, "voice_events_repeated_total") == 1
    # One event at a time: each waits for its commit, so each is a transaction of one write.
    assert value(samples, "voice_commit_batch_size_count") == 5
    assert value(samples, "voice_commit_batch_size_sum") == 5
    assert value(samples, "voice_commit_batch_size_bucket", le="1.0") == 5
    assert value(samples, "voice_commit_latency_seconds_count") == 5
    assert value(samples, "voice_commit_latency_seconds_sum") > 0
    assert value(samples, "voice_commit_latency_seconds_bucket", le="+Inf") == 5


def test_answer_decisions_are_writes_in_a_commit_too(client, call_log):
    answer(client, {"to": CALLEE, "from_user": "Alice"})
    answer(client, {"to": "+449098790000", "from_user": "Alice"})
    call_log.client.flush()
    samples = scrape(client)
    assert value(samples, "voice_commit_batch_size_sum") == 2
    assert value(samples, "voice_events_stored_total") == 0


def test_a_leg_is_counted_once_by_the_first_final_status_it_reaches(client):
    for second, status in enumerate(("started", "ringing", "answered", "completed")):
        post(client, "/voice/event", leg_event("leg-1", status, second))
    post(client, "/voice/event", leg_event("leg-1", "completed", 3))  # delivered again
    post(client, "/voice/event", leg_event("leg-2", "busy", 1))  # its only event
    post(client, "/voice/event", leg_event("leg-2", "started", 0))  # arriving after the end
    post(client, "/voice/event", leg_event("leg-3", "completed", 9))  # Vonage's completed, then the real outcome
    post(client, "/voice/event", leg_event("leg-3", "unanswered", 8))
    post(client, "/voice/event", leg_event("leg-4", "ringing", 1))  # not ended
    ended = by_label(scrape(client), "voice_calls_ended_total", "final_status")
    assert ended == zeros(FINAL_STATUSES, completed=2, busy=1)


def test_database_errors_are_counted_by_operation(tmp_path):
    unusable = "sqlite:////proc/no-such-folder/calls.db"
    config = {"DATABASE_URL": unusable, "CALL_LOG_TOKEN": CALL_LOG_TOKEN}
    with built_app(config) as application:
        client = application.test_client()
        assert client.get("/api/calls", headers=BEARER).status_code == 503
        assert client.post("/voice/event", json={"uuid": "leg-1", "status": "started"}).status_code == 503
        errors = by_label(scrape(client), "voice_database_errors_total", "operation")
    # The event's batch failed, then the event alone: two failed transactions.
    assert errors == {"read": 1, "commit": 2}


# Under serve.py: the workers and the writer are processes of their own.


def test_importing_serve_leaves_prometheus_client_unimported_so_its_workers_choose_multi_process_mode():
    """serve.py's workers are forked from it after it sets PROMETHEUS_MULTIPROC_DIR; had it imported prometheus_client
    before, the workers would inherit in-memory metrics that no scrape of another worker sees."""
    check = "import serve, sys; print('prometheus_client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def production_scrape(url: str) -> dict:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {PRODUCTION_TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
    return parsed(response.text)


def counted_by_process(folder: Path, sample: str) -> dict[int, float]:
    """How much each process counted of `sample`, from its own file in the multi-process folder."""
    counted = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, amount, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == sample:
                counted[pid] = counted.get(pid, 0) + amount
    return counted


def send_production_load(url: str, answers: int, events: int, refused: int) -> None:
    """Signed answers and events from several connections at once (so both workers get some), and refusals."""

    def deliver(index: int) -> int:
        with requests.Session() as session:
            if index < answers:
                path, headers = signed_answer(index)
                return session.get(f"{url}{path}", headers=headers, timeout=30).status_code
            if index < answers + events:
                body, headers = signed_event(event_payload("metrics", index - answers))
                return session.post(f"{url}/voice/event", data=body, headers=headers, timeout=30).status_code
            return session.get(f"{url}/voice/answer?to={CALLEE}", timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(deliver, range(answers + events + refused)))
    assert statuses == [200] * answers + [204] * events + [503] * refused


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_production_servers_workers_and_writer_add_up_in_one_scrape(backend, tmp_path):
    answers, events, refused = 24, 40, 6
    with running_server(tmp_path, database_url_for(backend, tmp_path), workers=2) as server:
        send_production_load(server.url, answers, events, refused)
        # Answer decisions reach the writer in the background: wait for all of them to be committed.
        wait_until(
            lambda: value(production_scrape(server.url), "voice_commit_batch_size_sum") == answers + events,
            30,
            "every answer decision committed",
        )
        # Each worker adds its requests' counts to the shared files every metrics.FLUSH_SECONDS.
        wait_until(
            lambda: total(production_scrape(server.url), "voice_webhooks_total") == answers + events + refused,
            10 * FLUSH_SECONDS,
            "every worker's counts flushed",
        )
        samples = production_scrape(server.url)
        (folder,) = server.tmpdir.glob("voice-metrics-*")
        roles = server.roles()
        answered_by = counted_by_process(folder, "voice_webhooks_total")
        stored_by = counted_by_process(folder, "voice_events_stored_total")
    assert by_label(samples, "voice_webhooks_total", "outcome", route="answer") == zeros(
        OUTCOMES, ok=answers, refused=refused
    )
    assert value(samples, "voice_webhooks_total", route="event", outcome="ok") == events
    assert value(samples, "voice_answer_decisions_total", outcome="connected", shape="outbound") == answers
    assert value(samples, "voice_signature_refusals_total", reason="unsigned") == refused
    assert value(samples, "voice_events_stored_total") == events
    assert value(samples, "voice_commit_batch_size_count") == value(samples, "voice_commit_latency_seconds_count")
    assert value(samples, "voice_commit_batch_size_count") <= answers + events
    assert value(samples, "voice_calls_ended_total", final_status="completed") == events // 4
    # Both workers served webhooks and only the writer stored events: the scrape added up three processes' files.
    assert sorted(pid for pid, amount in answered_by.items() if amount) == sorted(roles["worker"])
    assert [pid for pid, amount in stored_by.items() if amount] == roles["writer"]


def test_the_multi_process_folder_is_removed_when_the_server_stops(tmp_path):
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'calls.db'}", workers=2)
    try:
        folders = list(server.tmpdir.glob("voice-metrics-*"))
        assert len(folders) == 1 and list(folders[0].glob("*.db"))
    finally:
        stop_group(server.process)
    try:
        assert server.process.returncode == 0
        assert not folders[0].exists()
    finally:
        shutil.rmtree(server.tmpdir, ignore_errors=True)


def test_the_start_up_notes_name_the_metrics_endpoint():
    notes = "\n".join(startup_notes(settings_from({"CALL_LOG_TOKEN": CALL_LOG_TOKEN})))
    assert "http://127.0.0.1:3000/metrics" in notes


def test_a_tally_adds_every_increment_from_many_threads_exactly_once():
    registry = CollectorRegistry()
    tally = Tally(Counter("ticks", "Increments from many threads", registry=registry))
    done = threading.Event()

    def flush_meanwhile():
        while not done.is_set():
            tally.flush()

    def increment():
        for _ in range(20_000):
            tally.inc()

    flusher = threading.Thread(target=flush_meanwhile)
    flusher.start()
    workers = [threading.Thread(target=increment) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    flusher.join()
    tally.flush()
    tally.flush()
    assert registry.get_sample_value("ticks_total") == 8 * 20_000
