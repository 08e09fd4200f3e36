"""A simulated call: the scenarios, the events Vonage would send for each, and what a call result holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from vonage_voice.models import Connect, Record, Talk

# The call shapes: an app user calls a phone, a phone calls the application (and an app user takes it), an app
# user calls another by name, an app user calls a busy phone and is told why, an app user's recorded call (with its
# recording's webhook at the end), and an app user's call to a phone that is answered and held open (no completed
# event: it lasts until something hangs it up, `flask hangup` say).
SCENARIOS = ("outbound", "inbound", "app-to-app", "busy", "recorded", "long")
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
    outcome: str = "answered"  # the busy scenario always ends busy, the long one is always answered
    duration: int = 5
    region_url: str = REGION_URL  # the Voice API host the answer request names for the call
    # The recorded scenario's recording: where its webhook says it is, and its size (left out when None).
    recording_url: str | None = None
    recording_size: int | None = None

    @property
    def held_open(self) -> bool:
        return self.name == "long"

    @property
    def from_phone(self) -> bool:
        return self.name == "inbound"

    @property
    def callee_outcome(self) -> str:
        if self.name in ("busy", "long"):
            return "busy" if self.name == "busy" else "answered"
        return self.outcome


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
    held_legs: list[tuple[str, str]] = field(default_factory=list)  # (leg, who) of a call held open, in progress

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
        elif isinstance(action, Record):
            channels = f", {action.channels} channels" if action.channels else ""
            steps.append(f"record the {action.split or 'call'} ({action.format or 'mp3'}{channels})")
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
class CallLegs:
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
    return CallLegs(*caller, conversation_uuid, inbound_uuid, outbound_uuid, start)


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


def caller_answered(call: CallLegs) -> list[dict]:
    """The caller's leg starting: started, ringing and answered (Vonage answers it to run the NCCO)."""
    events = [call.inbound("started")]
    call.tick(0.01)
    events.append(call.inbound("ringing"))
    call.tick(0.2)
    return [*events, call.inbound("answered")]


def play_until_connect(call: CallLegs, actions) -> Connect | None:
    """Run the clock through `actions` up to the first connect, and return that connect (None if none)."""
    for action in actions:
        if isinstance(action, Talk):
            call.tick(len(action.text) * SPEECH_SECONDS_PER_CHARACTER)
        elif isinstance(action, Connect):
            return action
    return None


def caller_completed(call: CallLegs, start: datetime, from_phone: bool) -> dict:
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


def callee_events(call: CallLegs, connect: Connect, outcome: str, duration: int) -> list[dict]:
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
    user's `from_user` and `custom_data` (docs/platform.md)."""
    common = {"uuid": inbound_uuid, "conversation_uuid": conversation_uuid, "region_url": scenario.region_url}
    if scenario.from_phone:
        return {"from": scenario.caller_number, "to": scenario.to, **common}
    return {"from_user": scenario.user, "to": scenario.to, "endpoint_type": "app", **common, "custom_data": {}}


def scenario_problem(scenario: Scenario, actions) -> str | None:
    """Where an answer's NCCO (SDK models) does not take the call `scenario` plays, or None."""
    if scenario.name == "outbound":
        return None  # a refusal with a spoken reason is a valid answer to a call to a number
    if scenario.name == "recorded":
        kinds = [type(action) for action in actions]
        if Connect not in kinds:
            return "the server did not connect the call, so nothing is recorded"
        if Record not in kinds[: kinds.index(Connect)]:
            return "the NCCO records nothing before its connect: start the server with RECORD_CALLS=on"
        return None
    connect = next((action for action in actions if isinstance(action, Connect)), None)
    endpoint = connect.endpoint[0] if connect else None
    said = " ".join(action.text for action in actions if isinstance(action, Talk))
    if scenario.name in ("busy", "long"):
        if endpoint is None or endpoint.type.value != "phone":
            what = "no callee can be busy" if scenario.name == "busy" else "no call is held open"
            return f"the server did not connect {scenario.to} (it says {said!r}), so {what}"
        if scenario.name == "long":
            return None
        if connect.eventType != "synchronous" or not connect.eventUrl:
            return "the connect is not synchronous with an eventUrl, so Vonage never asks what to tell the caller"
        return None
    if endpoint is None or endpoint.type.value != "app":
        hint = "INBOUND_ROUTES or INBOUND_DEFAULT_USER" if scenario.from_phone else f"CALLABLE_USERS ({scenario.to}?)"
        return f"the server did not ring an app user (it says {said!r}); check the server's {hint}"
    if scenario.name == "app-to-app" and endpoint.user != scenario.to:
        return f"the server rang the app user {endpoint.user}, not {scenario.to}"
    return None


def recording_webhook(call: CallLegs, start: datetime, scenario: Scenario, recording_uuid: str) -> dict:
    """The recording's webhook Vonage sends once the recorded conversation has ended."""
    call.tick(1.0)
    payload = {
        "start_time": _seconds(start),
        "end_time": _seconds(call.now),
        "recording_url": scenario.recording_url or f"https://api.nexmo.com/v1/files/{recording_uuid}",
        "recording_uuid": recording_uuid,
        "conversation_uuid": call.conversation_uuid,
        "timestamp": _timestamp(call.now),
    }
    if scenario.recording_size is not None:
        payload["size"] = scenario.recording_size
    return payload
