"""Playing a call against a server over HTTP, as Vonage would: the answer request, each event, the replies."""

from __future__ import annotations

import json
import threading
import time
import uuid as uuids
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

import requests
from vonage_voice.models import Record

from edge.signatures import sign_webhook
from events import SYNCHRONOUS_STATUSES
from simulator.model import (
    ANSWER_DEADLINE_SECONDS,
    CallLegs,
    CallResult,
    Exchange,
    Scenario,
    answer_request,
    call_legs,
    callee_events,
    caller_answered,
    caller_completed,
    describe_ncco,
    play_until_connect,
    recording_webhook,
    scenario_problem,
)
from vonage_helper.ncco_models import parse_ncco


def outcome_reply_problem(response: requests.Response) -> str | None:
    """Why Vonage could not run the NCCO a server answered a connect's outcome with, or None if it could."""
    if response.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
        return f"the reply has Content-Type {response.headers.get('Content-Type')!r}, not application/json"
    try:
        parse_ncco(response.json())
    except ValueError as error:
        return f"the reply is not a valid NCCO ({str(error).splitlines()[0]}); Vonage goes to the fallback answer URL"
    return None


class Simulator:
    """Sends what Vonage sends to a webhook server at `base_url`, signing it when given a secret."""

    def __init__(
        self,
        base_url: str,
        secret: str | None = None,
        method: str = "GET",
        answer_timeout: float = ANSWER_DEADLINE_SECONDS,
        event_timeout: float = 10.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.method = method.upper()
        self.answer_timeout = answer_timeout
        self.event_timeout = event_timeout
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _send(
        self, what: str, method: str, url: str, fields: dict, timeout: float
    ) -> tuple[Exchange, requests.Response | None]:
        headers = {}
        server = urlsplit(url)
        base = f"{server.scheme}://{server.netloc}"
        if method == "GET":
            pairs = [
                (key, value if isinstance(value, str) else json.dumps(value))
                for key, value in fields.items()
                if value is not None
            ]
            url = f"{url}?{urlencode(pairs)}"
            body = b""
        else:
            pairs = []
            body = json.dumps(fields).encode()
            headers["Content-Type"] = "application/json"
        if self.secret:
            headers["Authorization"] = sign_webhook(self.secret, method, body, pairs, time.time())
        started = time.perf_counter()
        try:
            response = self.session.request(method, url, data=body or None, headers=headers, timeout=timeout)
        except requests.Timeout:
            latency = (time.perf_counter() - started) * 1000
            return Exchange(what, None, latency, f"no response within {timeout:g} s", fields), None
        except requests.RequestException as error:
            latency = (time.perf_counter() - started) * 1000
            return Exchange(what, None, latency, f"cannot reach {base}: {type(error).__name__}", fields), None
        latency = (time.perf_counter() - started) * 1000
        return Exchange(what, response.status_code, latency, None, fields), response

    def call(self, number: str, outcome: str = "answered", duration: int = 5, user: str = "Alice") -> CallResult:
        """Simulate one Client SDK call to `number` from `user`, ending as `outcome`."""
        return self.play(Scenario("outbound", number, user, outcome=outcome, duration=duration))

    def play(self, scenario: Scenario) -> CallResult:
        """Play one whole call of `scenario`'s shape: the answer request, then every event, as Vonage sends them."""
        conversation_uuid = f"CON-{uuids.uuid4()}"
        inbound_uuid, outbound_uuid = str(uuids.uuid4()), str(uuids.uuid4())
        request = answer_request(scenario, conversation_uuid, inbound_uuid)
        answer_url = f"{self.base_url}/voice/answer"
        answer, response = self._send("answer", self.method, answer_url, request, self.answer_timeout)
        result = CallResult(conversation_uuid, answer)
        if response is None:
            answer.problem += "; Vonage would retry, then try the fallback answer URL"
            return result
        answer.problem = answer_problem(response, answer.latency_ms, signed=bool(self.secret))
        if answer.problem:
            return result
        result.ncco = response.json()
        actions = parse_ncco(result.ncco)
        result.plan = describe_ncco(actions)
        check = scenario_problem(scenario, actions)
        result.checks += [check] if check else []
        call = call_legs(scenario, conversation_uuid, inbound_uuid, outbound_uuid, datetime.now(UTC))
        self._play_events(result, call, actions, scenario)
        if scenario.name == "busy" and not check and result.told_why is None:
            result.checks.append("the busy outcome got no NCCO back, so the caller is not told why the call failed")
        return result

    def _play_events(self, result: CallResult, call: CallLegs, actions, scenario: Scenario) -> None:
        """Post the call's events: the caller's leg to the application's event URL, the leg a connect rings to
        the connect's eventUrl when it has one; a failed outcome's reply is the NCCO the caller hears next."""
        event_url = f"{self.base_url}/voice/event"
        start = call.now
        self._post_events(result, event_url, caller_answered(call))
        connect = play_until_connect(call, actions)
        if connect is not None:
            events = callee_events(call, connect, scenario.callee_outcome, scenario.duration)
            connect_url = connect.eventUrl[0] if connect.eventUrl else event_url
            if scenario.held_open:
                # Answered, and never completed: the call stays in progress until something hangs it up.
                self._post_events(result, connect_url, events[:-1])
                result.held_legs = [(call.inbound_uuid, "caller"), (call.outbound_uuid, "callee")]
                return
            reply = self._post_events(result, connect_url, events)
            synchronous = connect.eventType == "synchronous"
            if events[-1]["status"] in SYNCHRONOUS_STATUSES and synchronous and reply is not None:
                told = read_told_why(result, result.events[-1], reply)
                if told:
                    play_until_connect(call, told)
        self._post_events(result, event_url, [caller_completed(call, start, scenario.from_phone)])
        record = next((action for action in actions if isinstance(action, Record)), None)
        if scenario.name == "recorded" and record is not None:
            recording_url = record.eventUrl[0] if record.eventUrl else event_url
            webhook = recording_webhook(call, start, scenario, str(uuids.uuid4()))
            self._post_events(result, recording_url, [webhook], what="recording")

    def _post_events(
        self, result: CallResult, url: str, payloads: list[dict], what: str | None = None
    ) -> requests.Response | None:
        """POST each event to `url`, noting any reply that is not 2xx; returns the last reply."""
        reply = None
        for payload in payloads:
            label = what or f"{payload['status']} ({payload['direction']})"
            exchange, reply = self._send(label, "POST", url, payload, self.event_timeout)
            if reply is not None and not 200 <= reply.status_code < 300:
                exchange.problem = f"answered {reply.status_code}: {reply.text[:200]}"
                hint = signature_hint(reply, signed=bool(self.secret))
                if hint:
                    exchange.problem += f"; {hint}"
            result.events.append(exchange)
        return reply


def read_told_why(result: CallResult, exchange: Exchange, reply: requests.Response) -> list | None:
    """The NCCO (SDK models) a failed outcome was answered with, kept in `result`; None for an empty 2xx."""
    if not 200 <= reply.status_code < 300 or not reply.content:
        return None
    exchange.problem = outcome_reply_problem(reply)
    if exchange.problem:
        return None
    result.told_why = reply.json()
    result.told_why_after = len(result.events)
    actions = parse_ncco(result.told_why)
    result.told_why_plan = describe_ncco(actions)
    return actions


SIGNATURE_REFUSED = "webhook signature check failed"


def signature_hint(response: requests.Response, signed: bool) -> str | None:
    """What to set in this shell when the server refused the simulator's signature, or None for any other reply."""
    if response.status_code not in (401, 503):
        return None
    try:
        error = response.json().get("error", "")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, str) or not error.startswith(SIGNATURE_REFUSED):
        return None
    if not signed:
        return (
            "the server checks signatures and this shell has no VONAGE_SIGNATURE_SECRET: set the server's secret "
            "here too (export it, or put it in this folder's .env)"
        )
    return "the server refused this shell's signature: is VONAGE_SIGNATURE_SECRET here the server's?"


def answer_problem(response: requests.Response, latency_ms: float, signed: bool = True) -> str | None:
    """Why Vonage would not use this answer response, or None if it would."""
    if response.status_code != 200:
        hint = signature_hint(response, signed)
        if hint:
            return f"answered {response.status_code}: {hint}"
        return f"answered {response.status_code}; Vonage drops the call (or retries) instead of running an NCCO"
    if response.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
        return f"Content-Type is {response.headers.get('Content-Type')!r}, not application/json; Vonage rejects it"
    try:
        parse_ncco(response.json())
    except ValueError as error:
        return f"the NCCO is invalid: {str(error).splitlines()[0]}"
    if latency_ms > ANSWER_DEADLINE_SECONDS * 1000:
        return f"answered in {latency_ms / 1000:.1f} s; Vonage gives up after about {ANSWER_DEADLINE_SECONDS:g} s"
    return None
