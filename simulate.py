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
from urllib.parse import urlencode, urlsplit

import click
import requests
from flask import current_app
from flask.cli import with_appcontext
from vonage_voice.models import Connect, Talk

from cli import Command, check_base_url
from ncco import parse_ncco
from signatures import sign_webhook

OUTCOMES = ("answered", "busy", "unanswered", "rejected", "failed", "timeout", "cancelled")
# The call shapes: an app user calls a phone, a phone calls the application (and an app user takes it), an app
# user calls another by name, and an app user calls a busy phone and is told why.
SCENARIOS = ("outbound", "inbound", "app-to-app", "busy")
# The outcomes a synchronous connect posts to its eventUrl, whose reply may be an NCCO for the caller.
SYNCHRONOUS_OUTCOMES = frozenset({"busy", "unanswered", "rejected", "failed", "timeout"})
INBOUND_CALLER = "447700900123"  # the phone that calls in the inbound scenario
APPLICATION_NUMBER = "447700900001"  # the application's number it calls, when the settings name none
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
MAX_ANSWER_TIMEOUT_SECONDS = 60
OUTBOUND_RATE = Decimal("0.01270000")  # EUR per minute, as Vonage reports it
INBOUND_RATE = Decimal("0.00390000")  # EUR per minute for a phone's call to the application's number
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


@dataclass(frozen=True)
class Scenario:
    """One call to play: its shape (SCENARIOS), whom it calls, who calls, and how the callee's leg ends."""

    name: str = "outbound"
    to: str = "447700900000"  # the number or user called; for inbound, the application's number
    user: str = "Alice"  # the app user who calls (every shape but inbound)
    caller_number: str = INBOUND_CALLER  # the phone that calls (inbound)
    outcome: str = "answered"  # the busy scenario always ends busy
    duration: int = 5

    @property
    def from_phone(self) -> bool:
        return self.name == "inbound"

    @property
    def callee_outcome(self) -> str:
        return "busy" if self.name == "busy" else self.outcome


@dataclass
class CallResult:
    """A whole simulated call: the answer request, the NCCO, every event sent, and what went wrong."""

    conversation_uuid: str
    answer: Exchange
    ncco: list | None = None
    plan: str = ""
    events: list[Exchange] = field(default_factory=list)
    told_why: list | None = None  # the NCCO the server answered the connect's failed outcome with
    told_why_plan: str = ""
    told_why_after: int = 0  # how many events were sent when it came back
    checks: list[str] = field(default_factory=list)  # where the call did not take the scenario's shape

    @property
    def problems(self) -> list[str]:
        found = [self.answer.problem] if self.answer.problem else []
        return found + [f"{event.what}: {event.problem}" for event in self.events if event.problem] + self.checks

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
            caller = action.from_ or ("a random application number" if action.randomFromNumber else "the app user")
            outcome = f", its outcome posted to {action.eventUrl[0]}" if action.eventType and action.eventUrl else ""
            steps.append(
                f"connect {endpoint.type.value} {target} from {caller}, ringing up to {action.timeout or 60} s"
                + outcome
            )
        else:
            steps.append(action.action.value)
    return "; then ".join(steps)


@dataclass
class _CallLegs:
    """One simulated call's two legs and its clock: each event is stamped with the clock's time.

    The caller's leg is the call into Vonage (from None to the app user, as in the tutorial, or from a phone to
    the application's number); the callee's leg is the one a connect rings, and names the caller as `from`.
    """

    caller_from: str | None
    caller_to: str
    callee_from: str
    conversation_uuid: str
    inbound_uuid: str
    outbound_uuid: str
    now: datetime

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def inbound(self, status: str, **extra) -> dict:
        """An event of the caller's leg."""
        leg = {"from": self.caller_from, "to": self.caller_to, "uuid": self.inbound_uuid}
        return {**leg, **self._common(status), **extra}

    def outbound(self, status: str, callee: str, **extra) -> dict:
        """An event of the leg Vonage rings, to `callee` (a number or an app user)."""
        leg = {"headers": {}, "from": self.callee_from, "to": callee, "uuid": self.outbound_uuid}
        return {**leg, **self._common(status, "outbound"), **extra}

    def _common(self, status: str, direction: str = "inbound") -> dict:
        return {
            "conversation_uuid": self.conversation_uuid,
            "status": status,
            "direction": direction,
            "timestamp": _timestamp(self.now),
        }


def call_legs(scenario: Scenario, conversation_uuid: str, inbound_uuid: str, outbound_uuid: str, start: datetime):
    """The legs of a call of `scenario`'s shape, starting at `start`."""
    if scenario.from_phone:
        caller = (scenario.caller_number, scenario.to, scenario.caller_number)
    else:
        caller = (None, scenario.user, scenario.user)
    return _CallLegs(*caller, conversation_uuid, inbound_uuid, outbound_uuid, start)


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
    """The events Vonage posts for a Client SDK call from `user` executing `actions` (SDK NCCO models), in order.

    Modelled on the tutorial's payloads: the inbound app leg (to the user) and, for a connect, the outbound leg
    it rings, ending as `outcome`; completed events carry duration, rate and price.
    """
    scenario = Scenario(user=user, outcome=outcome, duration=duration)
    return scenario_events(actions, scenario, conversation_uuid, inbound_uuid, outbound_uuid, start)


def scenario_events(
    actions, scenario: Scenario, conversation_uuid: str, inbound_uuid: str, outbound_uuid: str, start: datetime
) -> list[dict]:
    """The events Vonage posts for a call of `scenario`'s shape executing `actions`, with no NCCO told why."""
    call = call_legs(scenario, conversation_uuid, inbound_uuid, outbound_uuid, start)
    events = caller_answered(call)
    connect = play_until_connect(call, actions)
    if connect is not None:
        events += callee_events(call, connect, scenario.callee_outcome, scenario.duration)
    return [*events, caller_completed(call, start, scenario.from_phone)]


def caller_answered(call: _CallLegs) -> list[dict]:
    """The caller's leg starting: started, ringing and answered (Vonage answers it to run the NCCO)."""
    events = [call.inbound("started")]
    call.tick(0.01)
    events.append(call.inbound("ringing"))
    call.tick(0.2)
    return [*events, call.inbound("answered")]


def play_until_connect(call: _CallLegs, actions) -> Connect | None:
    """Run the clock through `actions` up to the first connect, and return that connect (None if none)."""
    for action in actions:
        if isinstance(action, Talk):
            call.tick(len(action.text) * SPEECH_SECONDS_PER_CHARACTER)
        elif isinstance(action, Connect):
            return action
    return None


def caller_completed(call: _CallLegs, start: datetime, from_phone: bool) -> dict:
    """The caller's leg's completed event: an app user's leg is free, a phone's is charged by the minute."""
    call.tick(0.5)
    seconds = int((call.now - start).total_seconds())
    completed = {"start_time": _seconds(start), "end_time": _seconds(call.now), "duration": str(seconds)}
    if from_phone:
        money = {"rate": str(INBOUND_RATE), "price": _price(INBOUND_RATE, seconds), "network": NETWORK}
    else:
        money = {"rate": "0.00", "price": "0", "network": None}
    return call.inbound("completed", **completed, **money)


def _price(rate: Decimal, seconds: int) -> str:
    return str((rate * seconds / 60).quantize(Decimal("0.00000001"), ROUND_HALF_UP))


def callee_events(call: _CallLegs, connect: Connect, outcome: str, duration: int) -> list[dict]:
    """The leg a connect rings: started and ringing, then answered and completed, or a failed outcome."""
    endpoint = connect.endpoint[0]
    number = getattr(endpoint, "number", None)
    callee = number or getattr(endpoint, "user", None) or endpoint.type.value
    call.tick(0.5)
    events = [call.outbound("started", callee)]
    call.tick(0.5)
    events.append(call.outbound("ringing", callee))
    if outcome != "answered":
        call.tick((connect.timeout or 60) if outcome in ("unanswered", "timeout") else 3)
        extra = {"detail": OUTCOME_DETAIL[outcome]} if OUTCOME_DETAIL[outcome] else {}
        return [*events, call.outbound(outcome, callee, **extra)]
    answered = call.tick(4)
    events.append(call.outbound("answered", callee, start_time=None, rate=None, network=None))
    ended = call.tick(duration)
    completed = {"start_time": _seconds(answered), "end_time": _seconds(ended), "duration": str(duration)}
    if number is None:
        # An app user's leg: no carrier, no charge, and the caller still named.
        return [*events, call.outbound("completed", callee, **completed, rate="0.00", price="0", network=None)]
    money = {"rate": str(OUTBOUND_RATE), "price": _price(OUTBOUND_RATE, duration), "network": NETWORK}
    return [*events, call.outbound("completed", callee, **{"from": "Unknown"}, **completed, **money)]


def answer_request(scenario: Scenario, conversation_uuid: str, inbound_uuid: str) -> dict:
    """The answer request Vonage sends for a call of `scenario`'s shape: a phone's carries `from`, a Client SDK
    user's `from_user` and `custom_data` (VONAGE.md)."""
    common = {"uuid": inbound_uuid, "conversation_uuid": conversation_uuid, "region_url": REGION_URL}
    if scenario.from_phone:
        return {"from": scenario.caller_number, "to": scenario.to, **common}
    return {"from_user": scenario.user, "to": scenario.to, "endpoint_type": "app", **common, "custom_data": {}}


def scenario_problem(scenario: Scenario, actions) -> str | None:
    """Where an answer's NCCO (SDK models) does not take the call `scenario` plays, or None."""
    if scenario.name == "outbound":
        return None  # a refusal with a spoken reason is a valid answer to a call to a number
    connect = next((action for action in actions if isinstance(action, Connect)), None)
    endpoint = connect.endpoint[0] if connect else None
    said = " ".join(action.text for action in actions if isinstance(action, Talk))
    if scenario.name == "busy":
        if endpoint is None or endpoint.type.value != "phone":
            return f"the server did not connect {scenario.to} (it says {said!r}), so no callee can be busy"
        if connect.eventType != "synchronous" or not connect.eventUrl:
            return "the connect is not synchronous with an eventUrl, so Vonage never asks what to tell the caller"
        return None
    if endpoint is None or endpoint.type.value != "app":
        hint = "INBOUND_ROUTES or INBOUND_DEFAULT_USER" if scenario.from_phone else f"CALLABLE_USERS ({scenario.to}?)"
        return f"the server did not ring an app user (it says {said!r}); check the server's {hint}"
    if scenario.name == "app-to-app" and endpoint.user != scenario.to:
        return f"the server rang the app user {endpoint.user}, not {scenario.to}"
    return None


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
        answer.problem = answer_problem(response, answer.latency_ms)
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

    def _play_events(self, result: CallResult, call: _CallLegs, actions, scenario: Scenario) -> None:
        """Post the call's events: the caller's leg to the application's event URL, the leg a connect rings to
        the connect's eventUrl when it has one; a failed outcome's reply is the NCCO the caller hears next."""
        event_url = f"{self.base_url}/voice/event"
        start = call.now
        self._post_events(result, event_url, caller_answered(call))
        connect = play_until_connect(call, actions)
        if connect is not None:
            events = callee_events(call, connect, scenario.callee_outcome, scenario.duration)
            connect_url = connect.eventUrl[0] if connect.eventUrl else event_url
            reply = self._post_events(result, connect_url, events)
            synchronous = connect.eventType == "synchronous"
            if events[-1]["status"] in SYNCHRONOUS_OUTCOMES and synchronous and reply is not None:
                told = read_told_why(result, result.events[-1], reply)
                if told:
                    play_until_connect(call, told)
        self._post_events(result, event_url, [caller_completed(call, start, scenario.from_phone)])

    def _post_events(self, result: CallResult, url: str, payloads: list[dict]) -> requests.Response | None:
        """POST each event to `url`, noting any reply that is not 2xx; returns the last reply."""
        reply = None
        for payload in payloads:
            what = f"{payload['status']} ({payload['direction']})"
            exchange, reply = self._send(what, "POST", url, payload, self.event_timeout)
            if reply is not None and not 200 <= reply.status_code < 300:
                exchange.problem = f"answered {reply.status_code}: {reply.text[:200]}"
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
    scenario: Scenario | None = None,
) -> LoadReport:
    """Run `calls` simulated calls, `concurrency` at a time: to `number`, or of `scenario`'s shape when given."""
    scenario = scenario or Scenario("outbound", number, user, outcome=outcome, duration=duration)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda _: simulator.play(scenario), range(calls)))
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
    for sent, event in enumerate(result.events, start=1):
        lines.append(f"event   {event.what:24} ->  {event.status or 'no response'}  {event.latency_ms:.1f} ms")
        if result.told_why is not None and sent == result.told_why_after:
            lines.append("NCCO    " + json.dumps(result.told_why))
            lines.append("told    " + result.told_why_plan)
    lines.append(f"call    {result.conversation_uuid}")
    if result.problems:
        lines += [f"PROBLEM {problem}" for problem in result.problems]
    else:
        lines.append("ok: the server handled the whole call as Vonage needs")
    return lines


def default_callee(scenario: str, settings) -> str:
    """Whom a scenario calls when the command names nobody: the tutorial's number, the application's number
    (the first of INBOUND_ROUTES, else VONAGE_NUMBER), or a user app users may call (CALLABLE_USERS)."""
    if scenario == "inbound":
        routed = [number for number, _ in settings.inbound_routes]
        return (routed or [settings.vonage_number or APPLICATION_NUMBER])[0]
    if scenario == "app-to-app":
        return min(settings.callable_users - {"*"}, default="Bob")
    return "447700900000"


def _timeout_seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0 < value <= MAX_ANSWER_TIMEOUT_SECONDS:  # written so that NaN fails it too
        raise click.BadParameter(f"{value} is not a number of seconds above 0 and up to {MAX_ANSWER_TIMEOUT_SECONDS}")
    return value


@click.command("simulate", cls=Command)
@click.argument("to", required=False)
@click.option(
    "--scenario",
    type=click.Choice(SCENARIOS),
    default="outbound",
    show_default=True,
    help="The call: an app user calls TO (a number); a phone calls the application's number TO; an app user calls "
    "the user TO; an app user calls TO, who is busy, and is told why.",
)
@click.option(
    "--url",
    default=None,
    callback=check_base_url,
    help="The webhook server's base URL. Default: this server, http://127.0.0.1:PORT.",
)
@click.option(
    "--outcome", type=click.Choice(OUTCOMES), default="answered", show_default=True, help="How the callee's leg ends."
)
@click.option(
    "--duration", type=click.IntRange(0, 7200), default=5, show_default=True, help="Seconds the answered call lasts."
)
@click.option("--user", default="Alice", show_default=True, help="The Client SDK user who calls.")
@click.option("--caller", default=INBOUND_CALLER, show_default=True, help="The phone number that calls (inbound).")
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
    callback=_timeout_seconds,
    default=ANSWER_DEADLINE_SECONDS,
    show_default=True,
    help="Seconds to wait for the answer URL.",
)
@with_appcontext
def simulate_command(to, scenario, url, outcome, duration, user, caller, method, calls, concurrency, answer_timeout):
    """Play Vonage against a webhook server: one whole call to TO, or many (--calls)."""
    settings = current_app.config["SETTINGS"]
    base_url = url or f"http://127.0.0.1:{settings.port}"
    secret = settings.signature_secrets[0] if settings.signature_secrets else None
    simulator = Simulator(base_url, secret, method, answer_timeout=answer_timeout)
    to = to or default_callee(scenario, settings)
    call = Scenario(scenario, to, user, caller, outcome, duration)
    if calls > 1 or concurrency > 1:
        report = run_load(simulator, to, calls, concurrency, scenario=call)
        click.echo(
            f"load: {calls} calls ({scenario}) to {to} against {base_url}, {concurrency} at a time"
            + (", signed" if secret else "")
        )
        for line in report.lines():
            click.echo(line)
        if report.failures:
            raise SystemExit(1)
        return
    who = caller if call.from_phone else user
    signed = " (signed)" if secret else ""
    click.echo(f"simulating a call ({scenario}) from {who} to {to} against {base_url}{signed}")
    result = simulator.play(call)
    for line in transcript(result, method.upper()):
        click.echo(line)
    if not result.ok:
        raise SystemExit(1)
