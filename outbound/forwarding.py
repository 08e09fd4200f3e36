"""The forwarder: every stored event and answer decision delivered to the user's own app (FORWARD_URL), signed as
Standard Webhooks, until the receiver answers 2xx (docs/forwarding.md).

A background job (outbound.jobs). Each endpoint has CONCURRENCY senders of its own, each claiming one due delivery at a
time, sending it and recording what came of it: a slow or dead receiver holds only its own senders, never another
endpoint's, never a webhook from Vonage, and what waits for it stays in the database, not in memory. The job's pass
stops the deliveries of endpoints that answered 410 Gone, measures the oldest pending one, and wakes idle senders.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from typing import NamedTuple

import requests

from calllog.deliveries import DELIVERED, FAILED, PENDING, STOPPED, Claimed, DeliveryStore, Messages, Outcome
from calllog.schema import Database, StorageError
from outbound import retry_schedule
from outbound.signing import Signer, envelope
from runtime.logs import LOGGER_NAME
from runtime.metrics import ForwardingMetrics

log = logging.getLogger(f"{LOGGER_NAME}.forward")

# Deliveries to one endpoint in flight at once.
CONCURRENCY = 4
# A claim lasts this long past the timeout: a forwarder killed mid-attempt holds its deliveries no longer, and
# another pass (or server) sends them again.
LEASE_MARGIN_SECONDS = 10
IDLE_SECONDS = 1.0  # how often a pass runs, and the longest a sender with nothing due waits to look again
STORAGE_DOWN_SECONDS = 2.0
ERROR_TEXT = 500  # the most of a receiver's error kept in last_error
# The error of a delivery whose event (or answer decision) is gone: it is not tried again.
MISSING = "what it sends is no longer in the call log (removed by CALL_LOG_RETENTION?)"

_STATUS_OF = {
    retry_schedule.DELIVERED: DELIVERED,
    retry_schedule.RETRY: PENDING,
    retry_schedule.FAILED: FAILED,
    retry_schedule.STOPPED: STOPPED,
}


class Answer(NamedTuple):
    """What one attempt got: the receiver's status and Retry-After, or why there was none."""

    status: int | None
    retry_after: str | None
    error: str | None


def post(session: requests.Session, url: str, body: bytes, headers: dict, timeout: float) -> Answer:
    """POST one message; a redirect is not followed (it counts as a failure), and nothing here raises."""
    try:
        response = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return Answer(None, None, f"no answer within {timeout:g} s (FORWARD_TIMEOUT)")
    except requests.ConnectionError as error:
        return Answer(None, None, f"cannot connect: {_connection_problem(error)}")
    except requests.RequestException as error:
        return Answer(None, None, f"{type(error).__name__}: {_first_line(error)}")
    status = response.status_code
    error = None
    if 300 <= status < 400:
        error = f"answered {status}, a redirect to {response.headers.get('location')!r}, which is not followed"
    elif not 200 <= status < 300:
        error = f"answered {status}: {response.text[:ERROR_TEXT].strip()}".rstrip(": ")
    response.close()
    return Answer(status, response.headers.get("retry-after"), error)


def _connection_problem(error: Exception) -> str:
    """Why a connection failed, as the system said it ("Connection refused"), without urllib3's wrapping."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
    return found.group(1).strip() if found else _first_line(error)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:ERROR_TEXT] if text else type(error).__name__


class Forwarder:
    """The job that sends each due delivery to its endpoint and records what came of it."""

    name = "forward"

    def __init__(
        self,
        database: Database,
        endpoints: tuple[str, ...],
        signer: Signer,
        timeout: float,
        metrics: ForwardingMetrics,
        clock=time.time,
        jitter=random.random,
    ):
        self.database = database
        self.endpoints = endpoints
        self.store = DeliveryStore(database)
        self.messages = Messages(database)
        self.signer = signer
        self.timeout = timeout
        self.metrics = metrics
        self._clock = clock
        self._jitter = jitter
        self._failing = dict.fromkeys(endpoints, False)
        self._lock = threading.Lock()
        self._sessions = threading.local()
        self._storage_down = False
        self._stopped: frozenset[str] = frozenset()
        # Each pass wakes the senders that found nothing due; closing stops them.
        self._pass = threading.Condition()
        self._closing = threading.Event()
        self._senders = [
            threading.Thread(target=self._send_loop, args=(endpoint,), name=f"forward-{number}-{slot}", daemon=True)
            for number, endpoint in enumerate(endpoints)
            for slot in range(CONCURRENCY)
        ]
        self._started = False

    def run_due(self, now: float) -> float:
        """Stop the deliveries of endpoints that answered 410 Gone, measure the oldest pending one, and wake the
        senders that found nothing due; how soon to look again."""
        if not self._started:
            self._started = True
            for sender in self._senders:
                sender.start()
        try:
            stopped = frozenset(self.store.stopped_endpoints())
            for endpoint in stopped & set(self.endpoints):
                self.store.stop_pending(endpoint, now)
            self._stopped = stopped
            self._gauge_oldest(now)
        except StorageError as error:
            if not self._storage_down:
                log.warning("forwarding waits for the database: %s", error)
            self._storage_down = True
            return STORAGE_DOWN_SECONDS
        if self._storage_down:
            log.info("forwarding resumes: the database answers again")
            self._storage_down = False
        with self._pass:
            self._pass.notify_all()
        return IDLE_SECONDS

    def _send_loop(self, endpoint: str) -> None:
        """One of the endpoint's senders: claim one due delivery, send it, record it; when none is due, wait for
        the next pass. A delivery is held only while it is being sent, so a lease covers one attempt."""
        while not self._closing.is_set():
            claimed = []
            if endpoint not in self._stopped:
                try:
                    claimed = self.store.claim(endpoint, 1, self._clock(), self.timeout + LEASE_MARGIN_SECONDS)
                except StorageError:
                    pass  # run_due says so, once
                except Exception:
                    log.exception("forwarding to %s: a claim failed unexpectedly", endpoint)
            if not claimed:
                with self._pass:
                    if not self._closing.is_set():
                        self._pass.wait(IDLE_SECONDS)
                continue
            self._deliver(claimed[0])

    def _gauge_oldest(self, now: float) -> None:
        oldest = self.store.oldest_pending(self.endpoints)
        for endpoint, gauge in self.metrics.oldest_pending.items():
            created = oldest.get(endpoint)
            gauge.set(0 if created is None else max(0.0, now - created))

    def _deliver(self, delivery: Claimed) -> None:
        try:
            answer = self._send(delivery)
            now = self._clock()
            verdict = retry_schedule.verdict(delivery.attempts, answer.status, answer.retry_after, now, self._jitter())
            self._settle(delivery, answer, verdict, now)
        except StorageError as error:
            # Its lease runs out and it is sent again: the receiver drops the repeat by its webhook-id.
            log.warning("forwarding %s: its outcome was not recorded (%s); it is sent again", delivery.endpoint, error)
        except Exception:
            log.exception("forwarding to %s failed unexpectedly; it is sent again", delivery.endpoint)

    def _send(self, delivery: Claimed) -> Answer:
        message = self.messages.read(delivery.kind, delivery.webhook_id)
        if message is None:
            return Answer(None, None, MISSING)
        body = envelope(message.type, message.timestamp, message.data)
        # Signed at the wall clock's time, whatever clock schedules the attempts: a receiver refuses a
        # webhook-timestamp more than 5 minutes from its own.
        headers = self.signer.headers(delivery.webhook_id, body, time.time())
        return post(self._session(), delivery.endpoint, body, headers, self.timeout)

    def _settle(self, delivery: Claimed, answer: Answer, verdict: retry_schedule.Verdict, now: float) -> None:
        endpoint = delivery.endpoint
        if answer.error == MISSING:
            verdict = retry_schedule.Verdict(retry_schedule.FAILED)
        status = _STATUS_OF[verdict.outcome]
        next_at = now + (verdict.wait or 0)
        if not self.store.record(delivery, Outcome(status, next_at, answer.status, answer.error), now):
            return  # its lease ran out meanwhile: the attempt that holds it now counts
        self.metrics.outcomes[endpoint][verdict.outcome].inc()
        if status != PENDING:
            self.metrics.attempts_per_delivery[endpoint].observe(delivery.attempts)
        if status == STOPPED:
            self._stopped = self._stopped | {endpoint}  # this endpoint's other senders claim nothing more
            self.store.stop_endpoint(endpoint, f"answered 410 Gone at attempt {delivery.attempts}", now)
            log.warning(
                "FORWARD_URL %s answered 410 Gone: nothing more is sent there; remove it from FORWARD_URL, or "
                "send again with: flask forward replay --since 1d --endpoint %s",
                endpoint,
                endpoint,
            )
        elif status == FAILED:
            log.warning("forwarding to %s: gave up after %d attempts: %s", endpoint, delivery.attempts, answer.error)
        self._note_failing(endpoint, status, answer.error)

    def _note_failing(self, endpoint: str, status: str, error: str | None) -> None:
        """One line when an endpoint starts failing, and one when it takes deliveries again."""
        with self._lock:
            was, now_failing = self._failing[endpoint], status != DELIVERED
            self._failing[endpoint] = now_failing
        if now_failing and not was:
            log.warning("forwarding to %s fails (%s); retrying on the schedule", endpoint, error)
        elif was and not now_failing:
            log.info("forwarding to %s delivers again", endpoint)

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
        return session

    def close(self) -> None:
        """Stop the senders after the attempt each is making (bounded by FORWARD_TIMEOUT), then close the database."""
        self._closing.set()
        with self._pass:
            self._pass.notify_all()
        for sender in self._senders if self._started else []:
            sender.join(self.timeout + LEASE_MARGIN_SECONDS)
        self.database.close()
