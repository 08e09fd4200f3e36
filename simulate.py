"""The call simulator: plays the Vonage platform against any webhook server, over HTTP only."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid as uuids
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode

import click
import requests
from flask import current_app
from flask.cli import with_appcontext
from vonage_voice.models import Connect, Talk

from ncco import parse_ncco
from signatures import sign_webhook

OUTCOMES = ("answered", "busy", "unanswered", "rejected", "failed", "timeout", "cancelled")
# The `detail` Vonage gives each failed outcome.
OUTCOME_DETAIL = {
    "busy": "busy",
    "unanswered": "unavailable",
    "rejected": "declined",
    "failed": "cannot_route",
    "timeout": "carrier_timeout",
    "cancelled": None,
}
ANSWER_DEADLINE_SECONDS = 5.0
OUTBOUND_RATE = Decimal("0.01270000")  # EUR per minute, as Vonage reports it
NETWORK = "23410"
REGION_URL = "https://api-eu-1.vonage.com"
SPEECH_SECONDS_PER_CHARACTER = 0.07


@dataclass
class Exchange:
    """One request the simulator sent, and what came back."""

    what: str
    status: int | None
    latency_ms: float
    problem: str | None = None
    payload: dict | None = None


@dataclass
class CallResult:
    """A whole simulated call: the answer request, the NCCO, every event sent, and what went wrong."""

    conversation_uuid: str
    answer: Exchange
    ncco: list | None = None
    plan: str = ""
    events: list[Exchange] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = [self.answer.problem] if self.answer.problem else []
        return found + [f"{event.what}: {event.problem}" for event in self.events if event.problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _seconds(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def describe_ncco(actions) -> str:
    """What Vonage would do with a (valid) NCCO, in one line."""
    steps = []
    for action in actions:
        if isinstance(action, Talk):
            steps.append(f"say {action.text!r}")
        elif isinstance(action, Connect):
            endpoint = action.endpoint[0]
            target = getattr(endpoint, "number", None) or getattr(endpoint, "user", None) or endpoint.type
            caller = action.from_ or "a random application number"
            steps.append(
                f"connect {endpoint.type.value} {target} from {caller}, ringing up to {action.timeout or 60} s"
            )
        else:
            steps.append(action.action.value)
    return "; then ".join(steps)


@dataclass
class _CallLegs:
    """One simulated call's two legs and its clock: each event is stamped with the clock's time."""

    user: str
    conversation_uuid: str
    inbound_uuid: str
    outbound_uuid: str
    now: datetime

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def inbound(self, status: str, **extra) -> dict:
        """An event of the app user's leg (the call into Vonage)."""
        return {"from": None, "to": self.user, "uuid": self.inbound_uuid, **self._common(status), **extra}

    def outbound(self, status: str, number: str, **extra) -> dict:
        """An event of the leg Vonage rings, to `number`."""
        leg = {"headers": {}, "from": self.user, "to": number, "uuid": self.outbound_uuid}
        return {**leg, **self._common(status, "outbound"), **extra}

    def _common(self, status: str, direction: str = "inbound") -> dict:
        return {
            "conversation_uuid": self.conversation_uuid,
            "status": status,
            "direction": direction,
            "timestamp": _timestamp(self.now),
        }


def call_events(
    actions,
    user: str,
    outcome: str,
    duration: int,
    conversation_uuid: str,
    inbound_uuid: str,
    outbound_uuid: str,
    start: datetime,
) -> list[dict]:
    """The events Vonage posts for a Client SDK call executing `actions` (SDK NCCO models), in order.

    Modelled on the tutorial's payloads: the inbound app leg (to the user) and, for a connect to a phone,
    the outbound phone leg, ending as `outcome`; completed events carry duration, rate and price.
    """
    call = _CallLegs(user, conversation_uuid, inbound_uuid, outbound_uuid, start)
    events = [call.inbound("started")]
    call.tick(0.01)
    events.append(call.inbound("ringing"))
    call.tick(0.2)
    events.append(call.inbound("answered"))
    for action in actions:
        if isinstance(action, Talk):
            call.tick(len(action.text) * SPEECH_SECONDS_PER_CHARACTER)
        elif isinstance(action, Connect) and getattr(action.endpoint[0], "number", None):
            events += _phone_leg_events(call, action.endpoint[0].number, outcome, duration, action.timeout or 60)
            break
    call.tick(0.5)
    seconds = int((call.now - start).total_seconds())
    completed = {"start_time": _seconds(start), "end_time": _seconds(call.now), "duration": str(seconds)}
    events.append(call.inbound("completed", **completed, rate="0.00", price="0", network=None))
    return events


def _phone_leg_events(call: _CallLegs, number: str, outcome: str, duration: int, ringing_timeout: int) -> list[dict]:
    """The phone leg a connect rings: started and ringing, then answered and completed, or a failed outcome."""
    call.tick(0.5)
    events = [call.outbound("started", number)]
    call.tick(0.5)
    events.append(call.outbound("ringing", number))
    if outcome != "answered":
        call.tick(ringing_timeout if outcome in ("unanswered", "timeout") else 3)
        extra = {"detail": OUTCOME_DETAIL[outcome]} if OUTCOME_DETAIL[outcome] else {}
        return [*events, call.outbound(outcome, number, **extra)]
    answered = call.tick(4)
    events.append(call.outbound("answered", number, start_time=None, rate=None, network=None))
    ended = call.tick(duration)
    price = (OUTBOUND_RATE * duration / 60).quantize(Decimal("0.00000001"), ROUND_HALF_UP)
    completed = {"start_time": _seconds(answered), "end_time": _seconds(ended), "duration": str(duration)}
    money = {"rate": str(OUTBOUND_RATE), "price": str(price), "network": NETWORK}
    return [*events, call.outbound("completed", number, **{"from": "Unknown"}, **completed, **money)]


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
        self, what: str, method: str, path: str, fields: dict, timeout: float
    ) -> tuple[Exchange, requests.Response | None]:
        url = f"{self.base_url}{path}"
        headers = {}
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
            return Exchange(what, None, latency, f"cannot reach {self.base_url}: {type(error).__name__}", fields), None
        latency = (time.perf_counter() - started) * 1000
        return Exchange(what, response.status_code, latency, None, fields), response

    def call(self, number: str, outcome: str = "answered", duration: int = 5, user: str = "Alice") -> CallResult:
        """Simulate one Client SDK call to `number` from `user`, ending as `outcome`."""
        conversation_uuid = f"CON-{uuids.uuid4()}"
        inbound_uuid, outbound_uuid = str(uuids.uuid4()), str(uuids.uuid4())
        request = {
            "from_user": user,
            "to": number,
            "endpoint_type": "app",
            "uuid": inbound_uuid,
            "conversation_uuid": conversation_uuid,
            "region_url": REGION_URL,
            "custom_data": {},
        }
        answer, response = self._send("answer", self.method, "/voice/answer", request, self.answer_timeout)
        result = CallResult(conversation_uuid, answer)
        if response is None:
            answer.problem += "; Vonage would retry, then try the fallback answer URL"
            return result
        answer.problem = answer_problem(response, answer.latency_ms)
        if answer.problem:
            return result
        result.ncco = response.json()
        actions = parse_ncco(result.ncco)
        result.plan = describe_ncco(actions)
        start = datetime.now(UTC)
        for payload in call_events(
            actions, user, outcome, duration, conversation_uuid, inbound_uuid, outbound_uuid, start
        ):
            what = f"{payload['status']} ({payload['direction']})"
            exchange, reply = self._send(what, "POST", "/voice/event", payload, self.event_timeout)
            if reply is not None and not 200 <= reply.status_code < 300:
                exchange.problem = f"answered {reply.status_code}: {reply.text[:200]}"
            result.events.append(exchange)
        return result


def answer_problem(response: requests.Response, latency_ms: float) -> str | None:
    """Why Vonage would not use this answer response, or None if it would."""
    if response.status_code != 200:
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


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(fraction * len(ordered)))) - 1]


@dataclass
class LoadReport:
    """What a load run measured."""

    calls: int
    seconds: float
    answer_ms: list[float]
    event_ms: list[float]
    failures: list[str]

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        return [
            f"calls        {self.calls} in {self.seconds:.2f} s = {self.calls_per_second:.1f} calls/s",
            f"answer       p50 {percentile(self.answer_ms, 0.5):.1f} ms  p99 {percentile(self.answer_ms, 0.99):.1f} ms",
            f"events       {len(self.event_ms)} sent, p50 {percentile(self.event_ms, 0.5):.1f} ms  "
            f"p99 {percentile(self.event_ms, 0.99):.1f} ms",
            f"failures     {len(self.failures)}" + (f" (first: {self.failures[0]})" if self.failures else ""),
        ]


def run_load(
    simulator: Simulator,
    number: str,
    calls: int,
    concurrency: int,
    outcome: str = "answered",
    duration: int = 5,
    user: str = "Alice",
) -> LoadReport:
    """Run `calls` simulated calls, `concurrency` at a time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda _: simulator.call(number, outcome, duration, user), range(calls)))
    seconds = time.perf_counter() - started
    return LoadReport(
        calls=calls,
        seconds=seconds,
        answer_ms=[result.answer.latency_ms for result in results],
        event_ms=[event.latency_ms for result in results for event in result.events],
        failures=[problem for result in results for problem in result.problems],
    )


def transcript(result: CallResult, method: str) -> list[str]:
    """A readable account of one simulated call."""
    answer = result.answer
    lines = [f"answer  {method} /voice/answer  ->  {answer.status or 'no response'}  {answer.latency_ms:.1f} ms"]
    if result.ncco is not None:
        lines.append("NCCO    " + json.dumps(result.ncco))
        lines.append("plan    " + result.plan)
    for event in result.events:
        lines.append(f"event   {event.what:24} ->  {event.status or 'no response'}  {event.latency_ms:.1f} ms")
    lines.append(f"call    {result.conversation_uuid}")
    if result.problems:
        lines += [f"PROBLEM {problem}" for problem in result.problems]
    else:
        lines.append("ok: the server handled the whole call as Vonage needs")
    return lines


@click.command("simulate")
@click.argument("number")
@click.option("--url", default=None, help="The webhook server's base URL. Default: this server, http://127.0.0.1:PORT.")
@click.option(
    "--outcome", type=click.Choice(OUTCOMES), default="answered", show_default=True, help="How the callee's leg ends."
)
@click.option(
    "--duration", type=click.IntRange(0, 7200), default=5, show_default=True, help="Seconds the answered call lasts."
)
@click.option("--user", default="Alice", show_default=True, help="The Client SDK user who calls.")
@click.option(
    "--method",
    type=click.Choice(["GET", "POST"], case_sensitive=False),
    default="GET",
    show_default=True,
    help="How the answer request is sent (the application's answer_method).",
)
@click.option(
    "--calls", type=click.IntRange(1, 100_000), default=1, show_default=True, help="Load mode: how many calls."
)
@click.option(
    "--concurrency", type=click.IntRange(1, 256), default=1, show_default=True, help="Load mode: calls at once."
)
@click.option(
    "--answer-timeout",
    type=float,
    default=ANSWER_DEADLINE_SECONDS,
    show_default=True,
    help="Seconds to wait for the answer URL.",
)
@with_appcontext
def simulate_command(number, url, outcome, duration, user, method, calls, concurrency, answer_timeout):
    """Play Vonage against a webhook server: one whole Client SDK call to NUMBER, or many (--calls)."""
    settings = current_app.config["SETTINGS"]
    base_url = url or f"http://127.0.0.1:{settings.port}"
    secret = settings.signature_secrets[0] if settings.signature_secrets else None
    simulator = Simulator(base_url, secret, method, answer_timeout=answer_timeout)
    if calls > 1 or concurrency > 1:
        report = run_load(simulator, number, calls, concurrency, outcome, duration, user)
        click.echo(
            f"load: {calls} calls to {number} against {base_url}, {concurrency} at a time"
            + (", signed" if secret else "")
        )
        for line in report.lines():
            click.echo(line)
        if report.failures:
            raise SystemExit(1)
        return
    click.echo(f"simulating a call from {user} to {number} against {base_url}" + (" (signed)" if secret else ""))
    result = simulator.call(number, outcome, duration, user)
    for line in transcript(result, method.upper()):
        click.echo(line)
    if not result.ok:
        raise SystemExit(1)
