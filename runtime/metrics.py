"""Prometheus metrics: what the webhooks and the call-log writer count, and the scrape (edge/status.py serves it at
GET /metrics).

Under serve.py the workers and the writer are processes of their own. prometheus_client's multi-process mode keeps
each process's values in files of the folder PROMETHEUS_MULTIPROC_DIR names (serve.run makes a fresh one per run,
before any of them starts), and each scrape adds the files up. An app built any other way (tests, `flask` commands)
counts in a registry of its own, which the scrape reads directly.

Every labelled child is bound once, here, at start-up: a request increments a child it already holds, with no
`.labels()` lookup, and every series is in the scrape from the start, at 0. What a request counts goes through a
Tally, an atomic tick added to the child in bulk (every FLUSH_SECONDS, before a scrape, and at exit): in
multi-process mode each of the child's own increments takes a lock, a getpid system call and a write to its file,
which under load cost a request about 5% of its time. So another process's requests show in a scrape within
FLUSH_SECONDS.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import time
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from config import CLIENT_AUTH_MODES, METRICS_FOLDER_VARIABLE
from events import FINAL_STATUSES
from ncco import APP_TO_APP, INBOUND, OUTBOUND

OUTCOMES = ("ok", "refused", "bad_request", "unavailable", "error")
SHAPES = (OUTBOUND, INBOUND, APP_TO_APP)
UNKNOWN_SHAPE = "unknown"  # a request that could not be read, or a connect's outcome: no call shape to tell
DATABASE_OPERATIONS = ("commit", "read")
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # a transaction holds at most BATCH_LIMIT (256) events
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

FLUSH_SECONDS = 1.0


class Tally:
    """A counter child's increments from requests: each `inc` is one atomic tick (itertools.count is a C object,
    safe across threads), and `flush` adds the ticks not yet added to the child."""

    __slots__ = ("child", "_ticks", "_flushes", "_added")

    def __init__(self, child):
        self.child = child
        self._ticks = itertools.count()
        self._flushes = 0  # the ticks flush itself took
        self._added = 0  # the increments already added to the child

    def inc(self) -> None:
        next(self._ticks)

    def flush(self) -> None:
        """Add the new increments to the child (one caller at a time: Metrics.flush holds a lock)."""
        increments = next(self._ticks) - self._flushes
        self._flushes += 1
        if increments > self._added:
            self.child.inc(increments - self._added)
            self._added = increments


def outcome_of(status: int) -> str:
    """A webhook's outcome from its response status (a refused signature is counted before it has one)."""
    if status < 400:
        return "ok"
    if status == 503:
        return "unavailable"
    return "bad_request" if status < 500 else "error"


def counted_by(name: str, documentation: str, label: str, values: Iterable[str], registry: CollectorRegistry) -> dict:
    """A counter with one label, as {value: its series}: every series is in the scrape from the start, at 0."""
    counter = Counter(name, documentation, [label], registry=registry)
    return {value: counter.labels(value) for value in values}


class Metrics:
    """Every metric the server keeps, in `registry`; each process (worker, writer) builds one at start-up."""

    def __init__(
        self,
        registry: CollectorRegistry,
        routes: Iterable[str] = (),
        refusal_codes: Iterable[str] = (),
        login_refusal_codes: Iterable[str] = (),
    ):
        """`routes` and `refusal_codes` name the webhook routes and the signature check's refusals, which the app
        counts (the edge defines both; the writer counts neither); `login_refusal_codes` the reasons POST
        /client/token refuses a login for (identity.refusals)."""
        self.registry = registry
        routes, refusal_codes = tuple(routes), tuple(refusal_codes)
        self._tallies: dict[int, Tally] = {}
        self._flush_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        webhooks = Counter(
            "voice_webhooks", "Voice webhook requests by route and outcome", ["route", "outcome"], registry=registry
        )
        # route -> response status -> child: the outcome of every status decided once, here.
        self.webhooks = {
            route: {status: self._tally(webhooks.labels(route, outcome_of(status))) for status in range(100, 600)}
            for route in routes
        }
        self.signature_refused = {route: self._tally(webhooks.labels(route, "refused")) for route in routes}
        refusals = Counter(
            "voice_signature_refusals",
            "Webhooks refused by the signature check, by reason",
            ["reason"],
            registry=registry,
        )
        self.refusals = {code: self._tally(refusals.labels(code)) for code in refusal_codes}
        answers = Counter(
            "voice_answer_decisions",
            "Answer decisions (/voice/answer, /voice/fallback, a connect's told-why outcome) by outcome and call shape",
            ["outcome", "shape"],
            registry=registry,
        )
        # By the decision's shape; a decision with no shape to tell is an unreadable request's.
        self.connected = {shape: self._tally(answers.labels("connected", shape)) for shape in SHAPES}
        self.refused_calls = {shape: self._tally(answers.labels("refused", shape)) for shape in SHAPES}
        self.refused_calls[UNKNOWN_SHAPE] = self._tally(answers.labels("unreadable", UNKNOWN_SHAPE))
        self.told_why = self._tally(answers.labels("told_why", UNKNOWN_SHAPE))
        self._login_metrics(registry, tuple(login_refusal_codes))
        self._writer_metrics(registry)

    def _login_metrics(self, registry: CollectorRegistry, refusal_codes: tuple[str, ...]) -> None:
        issued = Counter(
            "voice_client_tokens_issued",
            "Client SDK login tokens issued by POST /client/token, by how the user was authenticated",
            ["auth"],
            registry=registry,
        )
        self.client_tokens_issued = {mode: self._tally(issued.labels(mode)) for mode in CLIENT_AUTH_MODES}
        refused = Counter(
            "voice_client_token_refusals",
            "Logins POST /client/token refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.client_token_refusals = {code: self._tally(refused.labels(code)) for code in refusal_codes}

    def _tally(self, child) -> Tally:
        """The one Tally of `child` (several statuses share an outcome's child)."""
        return self._tallies.setdefault(id(child), Tally(child))

    def flush(self) -> None:
        """Add every tally's new increments to its counter."""
        with self._flush_lock:
            for tally in self._tallies.values():
                tally.flush()

    def start_flushing(self) -> None:
        """Flush every FLUSH_SECONDS on a thread of this process, and at its exit."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True)
            self._flusher.start()
            atexit.register(self.flush)

    def _flush_forever(self) -> None:
        # For the life of the process (a daemon thread); what is left at exit is flushed by atexit.
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def _writer_metrics(self, registry: CollectorRegistry) -> None:
        self.events_stored = Counter(
            "voice_events_stored", "Events committed to the call log for the first time", registry=registry
        )
        self.events_repeated = Counter(
            "voice_events_repeated", "Events delivered again, already stored, so not stored twice", registry=registry
        )
        self.batch_size = Histogram(
            "voice_commit_batch_size",
            "Writes (events and answer decisions) per committed transaction",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.commit_latency = Histogram(
            "voice_commit_latency_seconds",
            "Time to write and commit one transaction",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        errors = counted_by(
            "voice_database_errors", "Database failures by operation", "operation", DATABASE_OPERATIONS, registry
        )
        self.commit_errors, self.read_errors = (errors[operation] for operation in DATABASE_OPERATIONS)
        self.calls_ended = counted_by(
            "voice_calls_ended",
            "Call legs that reached a final status, by the first final status each reached",
            "final_status",
            FINAL_STATUSES,
            registry,
        )
        self.answer_replays = Counter(
            "voice_answer_replays",
            "Answer requests whose signed token (jti) was already recorded: answered again, not recorded twice",
            registry=registry,
        )
        self.answers_unrecorded = Counter(
            "voice_answers_unrecorded",
            "Answer decisions refused because a worker already kept the most it keeps for the writer",
            registry=registry,
        )


FORWARD_OUTCOMES = ("delivered", "retry", "failed", "stopped")
ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)  # a delivery has at most ten attempts (outbound.retry_schedule)


class ForwardingMetrics:
    """What the forwarder counts (FORWARD_URL), by endpoint: each bound at start-up, so every series is in the scrape
    from the start. Under serve.py the forwarder runs in its own process, whose files the scrape adds up too."""

    def __init__(self, registry: CollectorRegistry, endpoints: Iterable[str]):
        endpoints = tuple(endpoints)
        attempts = Counter(
            "voice_forward_attempts",
            "Attempts to deliver a message to FORWARD_URL, by endpoint and what followed: delivered, retry (a "
            "failure tried again later), failed (the last attempt failed), stopped (410 Gone)",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.outcomes = {
            endpoint: {outcome: attempts.labels(endpoint, outcome) for outcome in FORWARD_OUTCOMES}
            for endpoint in endpoints
        }
        oldest = Gauge(
            "voice_forward_oldest_pending_seconds",
            "Age of the oldest delivery still pending to each endpoint (0: none)",
            ["endpoint"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.oldest_pending = {endpoint: oldest.labels(endpoint) for endpoint in endpoints}
        per_delivery = Histogram(
            "voice_forward_attempts_per_delivery",
            "Attempts each delivery took, observed when it ends (delivered, failed or stopped)",
            ["endpoint"],
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.attempts_per_delivery = {endpoint: per_delivery.labels(endpoint) for endpoint in endpoints}


def multiprocess_folder() -> str | None:
    """Where this process's prometheus_client keeps its values, or None when they live in memory.

    prometheus_client reads this variable itself, once, when it is imported; the scrape must read the same one
    to agree with it, which is why this, unlike every setting, is not in config.Settings.
    """
    return os.environ.get(METRICS_FOLDER_VARIABLE) or None


# The text format every Prometheus reads (2.x and 3.x), as prometheus_client's own handler answers a scraper that asks
# for nothing else; the names here are plain ASCII, so nothing needs the 1.0.0 format's escaping.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class _Gauges:
    """A collector of gauges read at the scrape (from the database): (name, help, label, {label value: value})."""

    def __init__(self, gauges: list[tuple[str, str, str | None, dict]]):
        self.gauges = gauges

    def collect(self):
        for name, documentation, label, values in self.gauges:
            family = GaugeMetricFamily(name, documentation, labels=[label] if label else None)
            for key, value in values.items():
                family.add_metric([key] if label else [], value)
            yield family


def exposition(metrics: Metrics, gauges: list[tuple[str, str, str | None, dict]] = ()) -> bytes:
    """The scrape, in Prometheus' text format: every process's values added up, or this app's own; then `gauges`,
    values read now (label None: one series, under the key None)."""
    metrics.flush()
    folder = multiprocess_folder()
    if folder is None:
        registry = metrics.registry
    else:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
    read_now = CollectorRegistry()
    read_now.register(_Gauges(list(gauges)))
    return generate_latest(registry) + generate_latest(read_now)
