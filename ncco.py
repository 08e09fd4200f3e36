"""Call control: callee normalisation, the destination policy, routing to app users, and the NCCOs the server
returns: to the answer URL, and to a synchronous connect's outcome (the caller told why a call failed).

NCCOs are built here as the JSON Vonage reads. The Vonage SDK's pydantic models check them
(vonage_helper/ncco_models.py, used by the tests, the simulator and `flask call`), but the server does not build
with them: importing the models loads the SDK's REST client and pydantic into every worker, for nothing a request
needs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from events import SYNCHRONOUS_STATUSES
from policy import DestinationPolicy, NumberError, looks_like_phone_number, normalize_callee, vonage_digits


class Webhook(NamedTuple):
    """One of the routes Vonage calls on this server (docs/platform.md). edge/voice.py serves them, /metrics counts
    them by `name`, the call log stores an answer decision under its route's `name`, and `flask setup` and
    `flask webhooks` point the application's `setting` at `path`."""

    path: str
    name: str
    # The Vonage application's setting that points here, and the method it is set up with; None for the connect's
    # own eventUrl, which the answer's NCCO names rather than the application.
    setting: str | None
    method: str
    answers_calls: bool  # answered with an NCCO; the others receive events and store them


WEBHOOKS = (
    Webhook("/voice/answer", "answer", "answer_url", "GET", answers_calls=True),
    Webhook("/voice/event", "event", "event_url", "POST", answers_calls=False),
    Webhook("/voice/fallback", "fallback", "fallback_answer_url", "GET", answers_calls=True),
    # Apart from the application's event URL, so that only Vonage's synchronous request about a connect's outcome
    # is answered with an NCCO: the application's event URL answers every event 204.
    Webhook("/voice/event/connect", "connect", None, "POST", answers_calls=False),
    # The record action's own eventUrl (RECORD_CALLS): the recording's webhook, stored like any event.
    Webhook("/voice/recording", "recording", None, "POST", answers_calls=False),
)
ANSWER_WEBHOOK, EVENT_WEBHOOK, FALLBACK_WEBHOOK, CONNECT_WEBHOOK, RECORDING_WEBHOOK = WEBHOOKS
# The route an answer decision is stored under when it is the NCCO that tells a caller why a connect failed.
TOLD_WHY_ROUTE = "outcome"
# The three call shapes: an app user calling a phone, a phone calling an app user, an app user calling another.
OUTBOUND, INBOUND, APP_TO_APP = "outbound", "inbound", "app-to-app"
ANY_USER = "*"  # CALLABLE_USERS=* lets app users call any user of the application
# What machineDetection says for each MACHINE_DETECTION setting (off: the key is left out).
MACHINE_DETECTION_ACTIONS = {"hangup": "hangup", "message": "continue"}
# The languages Vonage's text-to-speech speaks (the SDK's TtsLanguageCode; a test keeps the two in step).
TTS_LANGUAGES = [
    "ar",
    "ca-ES",
    "cmn-CN",
    "cmn-TW",
    "cs-CZ",
    "cy-GB",
    "da-DK",
    "de-DE",
    "el-GR",
    "en-AU",
    "en-GB",
    "en-GB-WLS",
    "en-IN",
    "en-US",
    "en-ZA",
    "es-ES",
    "es-MX",
    "es-US",
    "eu-ES",
    "fi-FI",
    "fil-PH",
    "fr-CA",
    "fr-FR",
    "he-IL",
    "hi-IN",
    "hu-HU",
    "id-ID",
    "is-IS",
    "it-IT",
    "ja-JP",
    "ko-KR",
    "nb-NO",
    "nl-NL",
    "no-NO",
    "pl-PL",
    "pt-BR",
    "pt-PT",
    "ro-RO",
    "ru-RU",
    "sk-SK",
    "sv-SE",
    "th-TH",
    "tr-TR",
    "uk-UA",
    "vi-VN",
    "yue-CN",
]
# The answer request's fields that are text when present (the SDK's AnswerWebhook model); custom_data is an object.
ANSWER_TEXT_FIELDS = (
    "to",
    "from",
    "from_user",
    "endpoint_type",
    "uuid",
    "conversation_uuid",
    "region_url",
    "SipHeader_User-to-User",
)


@dataclass(frozen=True)
class CallPlan:
    """How an allowed call is connected: what the caller hears and how the callee is rung."""

    greeting: str = "Please wait while we connect you."
    language: str = "en-US"
    from_number: str | None = None
    ringing_timeout: int = 60
    call_limit: int = 7200
    style: int | None = None  # Vonage's talk style for every sentence spoken; None: the language's default
    # Set: each connect is synchronous and Vonage posts its outcome here, where the caller is told why it failed.
    event_url: str | None = None
    machine_detection: str = "off"  # off, hangup or message (MACHINE_DETECTION)
    # RECORD_CALLS: each connected call is recorded, whole, as one file with the caller and callee on two channels.
    record_calls: bool = False
    record_format: str = "mp3"
    record_announcement: str | None = None  # said first, when set, so the caller knows
    # Where Vonage posts the recording's webhook; None: the application's event URL (which stores it all the same).
    recording_url: str | None = None


@dataclass(frozen=True)
class CallRouting:
    """Calls to and between app users: which user takes each of the application's numbers, and whom
    app users may call by name."""

    inbound_routes: tuple[tuple[str, str], ...] = ()  # (the application's number in Vonage digits, user)
    inbound_default_user: str | None = None
    callable_users: frozenset[str] = frozenset()  # user names, or ANY_USER; empty: no user may be called

    def user_for(self, number: str | None) -> str | None:
        """The app user who takes calls to `number` (Vonage digits), or None when nobody does."""
        for route_number, user in self.inbound_routes:
            if route_number == number:
                return user
        return self.inbound_default_user

    def may_call(self, user: str) -> bool:
        return ANY_USER in self.callable_users or user in self.callable_users

    @property
    def application_numbers(self) -> frozenset[str]:
        return frozenset(number for number, _ in self.inbound_routes)


def talk(text: str, language: str, style: int | None = None) -> dict:
    """A `talk` action: `text` spoken in `language`, in Vonage's voice `style` when one is given."""
    action = {"action": "talk", "text": text, "language": language}
    if style is not None:
        action["style"] = style
    return action


def record_action(plan: CallPlan) -> dict:
    """The `record` action that records the whole conversation, the two parties on two channels (docs/platform.md,
    "Recordings"); Vonage posts the recording's webhook to the plan's recording_url."""
    action = {"action": "record", "format": plan.record_format, "split": "conversation", "channels": 2}
    if plan.recording_url:
        action["eventUrl"] = [plan.recording_url]
    return action


def _opening(plan: CallPlan) -> list[dict]:
    """What a connected call starts with: the announcement that it is recorded (if any), the greeting, and the
    recording itself, started before the connect so that it holds the whole conversation."""
    if not plan.record_calls:
        return [talk(plan.greeting, plan.language, plan.style)]
    announcement = [talk(plan.record_announcement, plan.language, plan.style)] if plan.record_announcement else []
    return [*announcement, talk(plan.greeting, plan.language, plan.style), record_action(plan)]


def _connect(endpoint: dict, caller_id: dict, plan: CallPlan) -> dict:
    connect = {
        "action": "connect",
        "endpoint": [endpoint],
        **caller_id,
        "timeout": plan.ringing_timeout,
        "limit": plan.call_limit,
    }
    if plan.event_url:
        connect["eventType"] = "synchronous"
        connect["eventUrl"] = [plan.event_url]
    return connect


def connect_ncco(callee: str, plan: CallPlan) -> list[dict]:
    """The NCCO that greets the caller and connects them to `callee` (Vonage digits)."""
    caller_id = {"from": plan.from_number} if plan.from_number else {"randomFromNumber": True}
    connect = _connect({"type": "phone", "number": callee}, caller_id, plan)
    if plan.machine_detection in MACHINE_DETECTION_ACTIONS:
        connect["machineDetection"] = MACHINE_DETECTION_ACTIONS[plan.machine_detection]
    return [*_opening(plan), connect]


def app_connect_ncco(user: str, plan: CallPlan, caller_number: str | None = None) -> list[dict]:
    """The NCCO that greets the caller and rings the Client SDK user `user`.

    `caller_number` (a phone caller's number, in Vonage digits) is shown to the user as `from`. An app user
    calling another user has no number: the API wants `from` left out then (docs/platform.md), though the SDK's
    Connect model insists on one; this follows the API (see parse_ncco).
    """
    caller_id = {"from": caller_number} if caller_number else {}
    return [*_opening(plan), _connect({"type": "app", "user": user}, caller_id, plan)]


def refusal_ncco(spoken_reason: str, language: str = "en-US", style: int | None = None) -> list[dict]:
    """The NCCO that tells the caller, in one sentence, why their call cannot be connected."""
    return [talk(f"Sorry, this call cannot be connected: {spoken_reason}.", language, style)]


@dataclass(frozen=True)
class AnswerDecision:
    """What the answer URL decided for one call, for the NCCO, the log and the call record."""

    ncco: list[dict]
    requested: str | None  # the number or user to call as the request wrote it, if it named one
    callee: str | None  # the number (Vonage's digits) or app user connected; None when refused
    reason: str | None = None  # why it was refused
    request: dict = field(default_factory=dict)
    body: bytes = b""
    shape: str = "outbound"  # OUTBOUND, INBOUND or APP_TO_APP

    @property
    def connected(self) -> bool:
        return self.callee is not None

    @property
    def recorded(self) -> bool:
        """Whether the NCCO records the call (RECORD_CALLS): its recording's webhook is then expected."""
        return any(action.get("action") == "record" for action in self.ncco)

    def __post_init__(self):
        if not self.body:
            object.__setattr__(self, "body", ncco_body(self.ncco))


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def ncco_body(ncco: list[dict]) -> bytes:
    """The NCCO as the answer URL's response body: compact JSON."""
    return _compact(ncco).encode("utf-8")


def callee_from_answer(fields: Mapping) -> str | None:
    """The number an answer request asks to call: top-level `to`, else `custom_data.to`.

    `fields` are the request's parameters as received (query string, form or JSON body);
    `custom_data` may be an object or a JSON string. Raises NumberError if the request is unreadable.
    """
    for name in ANSWER_TEXT_FIELDS:
        value = fields.get(name)
        if value is not None and not isinstance(value, str) and not isinstance(_as_text(value), str):
            raise NumberError(
                f"the answer request could not be read: {name}: not text", "the call request could not be read"
            )
    to = _as_text(fields.get("to"))
    if to:
        return to
    custom_data = fields.get("custom_data")
    if isinstance(custom_data, str):
        try:
            custom_data = json.loads(custom_data)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser goes
            custom_data = None
    if isinstance(custom_data, dict) and custom_data.get("to") not in (None, ""):
        callee = _as_text(custom_data["to"])
        if not isinstance(callee, str):
            raise NumberError("custom_data.to is not text", "the call request could not be read")
        return callee
    return None


def _as_text(value):
    # JSON bodies may carry numbers as numbers; they are read as text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def decide_answer(
    fields: Mapping, policy: DestinationPolicy, plan: CallPlan, routing: CallRouting = CallRouting()
) -> AnswerDecision:
    """Decide how to answer one call: connect it, or refuse it with a spoken reason. Never raises.

    The NCCO may be shared with other decisions for the same callee: serialise it, never modify it.
    """
    try:
        requested = callee_from_answer(fields)
    except NumberError as refusal:
        return AnswerDecision(
            ncco=refusal_ncco(refusal.spoken, plan.language, plan.style),
            requested=None,
            callee=None,
            reason=refusal.detail,
            request=dict(fields),
        )
    shape = call_shape(fields, requested, policy, routing)
    if shape == INBOUND:
        caller = _as_text(fields.get("from"))
        decided = inbound_decision(requested, caller, policy, plan, routing)
    elif shape == APP_TO_APP:
        decided = user_decision(requested, plan, routing)
    else:
        decided = callee_decision(requested, policy, plan)
    ncco, body, callee, reason = decided
    return AnswerDecision(ncco, requested, callee, reason, dict(fields), body, shape)


def call_shape(fields: Mapping, requested: str | None, policy: DestinationPolicy, routing: CallRouting) -> str:
    """Which call an answer request is: INBOUND (a phone calling one of the application's numbers), APP_TO_APP
    (a call to an app user, named in `to`) or OUTBOUND (a call to the phone number in `to`).

    A phone's call carries `from` and no `from_user`, a Client SDK call the reverse (docs/platform.md). A request with
    neither (curl, `flask ncco`) is a call to `to`, unless `to` is one of the application's numbers.
    """
    if not fields.get("from_user") and (
        fields.get("from") not in (None, "") or _is_application_number(requested, policy, routing)
    ):
        return INBOUND
    if requested and not looks_like_phone_number(requested):
        return APP_TO_APP
    return OUTBOUND


def _is_application_number(requested: str | None, policy: DestinationPolicy, routing: CallRouting) -> bool:
    if not policy.own_number and not routing.inbound_routes:
        return False
    digits = vonage_digits(requested, policy.default_region)
    routed = any(number == digits for number, _ in routing.inbound_routes)
    return digits is not None and (digits == policy.own_number or routed)


Decided = tuple[list[dict], bytes, str | None, str | None]  # NCCO, its body, who is connected (or None), why not


@functools.lru_cache(maxsize=4096)
def callee_decision(callee: str | None, policy: DestinationPolicy, plan: CallPlan) -> Decided:
    """The NCCO for a callee as written, its response body, the number it connects (or None) and why not.

    Pure, so it is cached: parsing a number with libphonenumber costs more than the rest of a request.
    """
    try:
        number = normalize_callee(callee, policy)
    except NumberError as refusal:
        ncco = refusal_ncco(refusal.spoken, plan.language, plan.style)
        return ncco, ncco_body(ncco), None, refusal.detail
    ncco = connect_ncco(number, plan)
    return ncco, ncco_body(ncco), number, None


@functools.lru_cache(maxsize=4096)
def inbound_decision(
    dialled: str | None, caller: str | None, policy: DestinationPolicy, plan: CallPlan, routing: CallRouting
) -> Decided:
    """A phone (`caller`) calling the application's number `dialled`: ring the app user INBOUND_ROUTES or
    INBOUND_DEFAULT_USER names, showing them the caller's number when it is one; else say nobody takes it."""
    number = vonage_digits(dialled, policy.default_region)
    user = routing.user_for(number)
    if user is None:
        example = f"INBOUND_ROUTES={number or '447700900001'}=Alice"
        reason = f"no app user takes calls to {number or dialled}: set INBOUND_ROUTES (for example {example}) or INBOUND_DEFAULT_USER"
        ncco = refusal_ncco("nobody is available to take calls to this number", plan.language, plan.style)
        return ncco, ncco_body(ncco), None, reason
    ncco = app_connect_ncco(user, plan, vonage_digits(caller, policy.default_region))
    return ncco, ncco_body(ncco), user, None


@functools.lru_cache(maxsize=4096)
def user_decision(user: str, plan: CallPlan, routing: CallRouting) -> Decided:
    """An app user calling another by name: ring `user` if CALLABLE_USERS lets them be called, else refuse."""
    name = user.strip()
    if not routing.may_call(name):
        shown = name if len(name) <= 100 else name[:100] + "..."
        if routing.callable_users:
            reason = f"the app user {shown!r} is not in CALLABLE_USERS"
        else:
            reason = f"CALLABLE_USERS is not set, so no app user may be called (asked for {shown!r})"
        ncco = refusal_ncco("calls to that user are not allowed", plan.language, plan.style)
        return ncco, ncco_body(ncco), None, reason
    ncco = app_connect_ncco(name, plan)
    return ncco, ncco_body(ncco), name, None


# What the caller hears for each outcome: (status, detail) first, then (status, None). {who} names the callee.
OUTCOME_SENTENCES = {
    ("busy", None): "{who} is busy. Please try again later.",
    ("unanswered", "unavailable"): "{who} is not available. Please try again later.",
    ("unanswered", None): "{who} did not answer. Please try again later.",
    ("timeout", None): "{who} did not answer. Please try again later.",
    ("rejected", "invalid_number"): "The number you called is not a valid number. Please check it and try again.",
    ("rejected", "restricted"): "{who} cannot be called from this service.",
    ("rejected", "declined"): "{who} declined the call. Please try again later.",
    ("rejected", None): "{who} did not take the call. Please try again later.",
    ("failed", "number_out_of_service"): "The number you called is out of service.",
    ("failed", "cannot_route"): "The call could not be put through. Please try again later.",
    ("failed", "internal_error"): "The call failed because of a network problem. Please try again later.",
    ("failed", None): "The call could not be connected. Please try again later.",
    ("machine", None): "The call reached voicemail, so it was ended.",
}
# MACHINE_DETECTION=message: what is said when a machine answers, heard by the voicemail and by the caller.
VOICEMAIL_MESSAGE = "Hello, sorry we missed you. Please call back when you can."


@dataclass(frozen=True)
class ToldWhy:
    """The reply to a failed connect's outcome: the NCCO that tells the caller what happened, and why."""

    ncco: list[dict]
    body: bytes
    reason: str  # for the log and the call record: the outcome and what the caller was told


def told_why(fields: Mapping, plan: CallPlan) -> ToldWhy | None:
    """The NCCO that answers an event posted to a synchronous connect's eventUrl, or None for an event that
    should leave the call as it is (any status but a failed outcome, or an outcome of the caller's own leg)."""
    status, detail, callee = (fields.get(name) for name in ("status", "detail", "to"))
    if not isinstance(status, str) or fields.get("direction") == "inbound":
        return None
    detail = detail if isinstance(detail, str) else None
    calls_a_person = isinstance(callee, str) and bool(callee.strip()) and not looks_like_phone_number(callee)
    return outcome_reply(status, detail, calls_a_person, plan)


@functools.lru_cache(maxsize=256)
def outcome_reply(status: str, detail: str | None, calls_a_person: bool, plan: CallPlan) -> ToldWhy | None:
    """What the caller hears when their connect ended as `status` (with Vonage's `detail`), or None."""
    machine = status == "machine" and plan.machine_detection in MACHINE_DETECTION_ACTIONS
    if status not in SYNCHRONOUS_STATUSES and not machine:
        return None
    outcome = f"{status} ({detail})" if detail else status
    if machine and plan.machine_detection == "message":
        ncco = [talk(VOICEMAIL_MESSAGE, plan.language, plan.style)]
        return ToldWhy(ncco, ncco_body(ncco), f"{outcome}: left a message: {VOICEMAIL_MESSAGE}")
    template = OUTCOME_SENTENCES.get((status, detail)) or OUTCOME_SENTENCES[(status, None)]
    sentence = template.format(who="The person you called" if calls_a_person else "The number you called")
    ncco = [talk(sentence, plan.language, plan.style)]
    return ToldWhy(ncco, ncco_body(ncco), f"{outcome}: told the caller: {sentence}")
