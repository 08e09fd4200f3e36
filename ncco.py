"""Call control: callee normalisation, the destination policy, and the NCCOs the answer URL returns.

NCCOs are built here as the JSON Vonage reads. The Vonage SDK's pydantic models check them (`parse_ncco`, used by
the tests, the simulator and `flask call`), but the server does not build with them: importing the models loads
the SDK's REST client and pydantic into every worker, for nothing a request needs.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import PhoneNumberType

# Vonage's number format (and the SDK's PhoneNumber pattern): E.164 digits, no '+' or '00'.
VONAGE_NUMBER_PATTERN = re.compile(r"^[1-9]\d{6,14}$")
MAX_RAW_NUMBER_LENGTH = 64
_SEPARATORS = re.compile(r"[\s\-.()/]")
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

DEFAULT_BLOCKED_TYPES = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST})
NUMBER_TYPE_NAMES = {
    value: name for name, value in vars(PhoneNumberType).items() if name.isupper() and isinstance(value, int)
}


class NumberError(ValueError):
    """A callee or caller ID that cannot be turned into a Vonage number; `spoken` is for the caller."""

    def __init__(self, detail: str, spoken: str):
        super().__init__(detail)
        self.detail = detail
        self.spoken = spoken


def normalize_number(raw: str, default_region: str | None = None) -> str:
    """Turn a number as people and Vonage write it into Vonage's E.164 digits (447700900000).

    Accepts 447700900000, +44 7700 900000, 0044 7700 900000, and national format (07700 900000)
    when `default_region` (an ISO code such as "GB") is given. Raises NumberError otherwise.
    """
    return _digits(_phone_number(raw, default_region))


def _digits(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def _phone_number(raw: str, default_region: str | None) -> phonenumbers.PhoneNumber:
    text = _SEPARATORS.sub("", str(raw).strip())
    if not text:
        raise NumberError("the number is empty", "no number to call was given")
    if len(text) > MAX_RAW_NUMBER_LENGTH:
        raise NumberError("the number is too long", "the number to call is not a phone number")
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+"):
        candidates = [_parse(text, None)]
    elif text.startswith("0"):
        if not default_region:
            raise NumberError(
                f"{raw!r} is in national format; write it in international format (447700900000) or set DEFAULT_REGION",
                "the number to call is not in international format",
            )
        candidates = [_parse(text, default_region)]
    else:
        # Vonage writes numbers as international digits with no '+'; a national number written
        # without its trunk prefix is tried second, and only wins when it alone is valid.
        candidates = [_parse("+" + text, None)]
        if default_region:
            candidates.append(_parse(text, default_region))
    parsed = [number for number in candidates if number is not None]
    if not parsed:
        raise NumberError(f"{raw!r} is not a phone number", "the number to call is not a phone number")
    valid = [number for number in parsed if phonenumbers.is_valid_number(number)]
    number = (valid or parsed)[0]
    if not phonenumbers.is_possible_number(number) or not VONAGE_NUMBER_PATTERN.match(_digits(number)):
        raise NumberError(
            f"{raw!r} is not a possible phone number",
            "the number to call is not a possible phone number",
        )
    return number


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _region(number: phonenumbers.PhoneNumber) -> str:
    # Numbers libphonenumber cannot place (such as the drama range 447700900xxx) count as
    # their calling code's main region, so ALLOWED_COUNTRIES=GB still admits the tutorial's number.
    return phonenumbers.region_code_for_number(number) or phonenumbers.region_code_for_country_code(number.country_code)


@dataclass(frozen=True)
class DestinationPolicy:
    """Where the server may connect calls: the toll-fraud guard."""

    allowed_countries: frozenset[str] = frozenset()
    blocked_types: frozenset[int] = DEFAULT_BLOCKED_TYPES
    own_number: str | None = None
    default_region: str | None = None


def normalize_callee(raw: str | None, policy: DestinationPolicy) -> str:
    """Return the callee as Vonage digits if the policy allows calling it; raise NumberError if not."""
    if raw is None or not str(raw).strip():
        raise NumberError("the request has no 'to' (nor custom_data.to)", "no number to call was given")
    number = _phone_number(raw, policy.default_region)
    digits = _digits(number)
    if policy.own_number and digits == policy.own_number:
        raise NumberError(
            f"{digits} is VONAGE_NUMBER, this server's own number; a call is never bridged back to itself",
            "the number to call is this service's own number",
        )
    region = _region(number)
    if policy.allowed_countries and region not in policy.allowed_countries:
        allowed = ", ".join(sorted(policy.allowed_countries))
        raise NumberError(
            f"{digits} is in {region}, which is not in ALLOWED_COUNTRIES ({allowed})",
            "calls to that country are not allowed",
        )
    number_type = phonenumbers.number_type(number)
    if number_type in policy.blocked_types:
        name = NUMBER_TYPE_NAMES.get(number_type, "UNKNOWN")
        raise NumberError(
            f"{digits} is a {name} number, blocked by BLOCKED_NUMBER_TYPES",
            f"calls to {name.lower().replace('_', ' ')} numbers are not allowed",
        )
    return digits


@dataclass(frozen=True)
class CallPlan:
    """How an allowed call is connected: what the caller hears and how the callee is rung."""

    greeting: str = "Please wait while we connect you."
    language: str = "en-US"
    from_number: str | None = None
    ringing_timeout: int = 60
    call_limit: int = 7200


def talk(text: str, language: str) -> dict:
    """A `talk` action: `text` spoken in `language`."""
    return {"action": "talk", "text": text, "language": language}


def connect_ncco(callee: str, plan: CallPlan) -> list[dict]:
    """The NCCO that greets the caller and connects them to `callee` (Vonage digits)."""
    caller_id = {"from": plan.from_number} if plan.from_number else {"randomFromNumber": True}
    connect = {
        "action": "connect",
        "endpoint": [{"type": "phone", "number": callee}],
        **caller_id,
        "timeout": plan.ringing_timeout,
        "limit": plan.call_limit,
    }
    return [talk(plan.greeting, plan.language), connect]


def refusal_ncco(spoken_reason: str, language: str = "en-US") -> list[dict]:
    """The NCCO that tells the caller, in one sentence, why their call cannot be connected."""
    return [talk(f"Sorry, this call cannot be connected: {spoken_reason}.", language)]


@dataclass(frozen=True)
class AnswerDecision:
    """What the answer URL decided for one call, for the NCCO, the log and the call record."""

    ncco: list[dict]
    requested: str | None  # the number to call as the request wrote it, if it named one
    callee: str | None  # the number connected, in Vonage's digits; None when refused
    reason: str | None = None  # why it was refused
    request: dict = field(default_factory=dict)
    body: bytes = b""

    @property
    def connected(self) -> bool:
        return self.callee is not None

    def __post_init__(self):
        if not self.body:
            object.__setattr__(self, "body", ncco_body(self.ncco))


def ncco_body(ncco: list[dict]) -> bytes:
    """The NCCO as the answer URL's response body: compact JSON."""
    return json.dumps(ncco, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def callee_from_answer(fields: Mapping) -> str | None:
    """The number an answer request asks to call: top-level `to`, else `custom_data.to`.

    `fields` are the request's parameters as received (query string, form or JSON body);
    `custom_data` may be an object or a JSON string. Raises NumberError if the request is unreadable.
    """
    for name in ANSWER_TEXT_FIELDS:
        if not isinstance(_as_text(fields.get(name)), (str, type(None))):
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
        except ValueError:
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


def decide_answer(fields: Mapping, policy: DestinationPolicy, plan: CallPlan) -> AnswerDecision:
    """Decide how to answer one call: connect it, or refuse it with a spoken reason. Never raises.

    The NCCO may be shared with other decisions for the same callee: serialise it, never modify it.
    """
    try:
        requested = callee_from_answer(fields)
    except NumberError as refusal:
        return AnswerDecision(
            ncco=refusal_ncco(refusal.spoken, plan.language),
            requested=None,
            callee=None,
            reason=refusal.detail,
            request=dict(fields),
        )
    ncco, body, number, reason = callee_decision(requested, policy, plan)
    return AnswerDecision(ncco=ncco, requested=requested, callee=number, reason=reason, request=dict(fields), body=body)


@functools.lru_cache(maxsize=4096)
def callee_decision(
    callee: str | None, policy: DestinationPolicy, plan: CallPlan
) -> tuple[list[dict], bytes, str | None, str | None]:
    """The NCCO for a callee as written, its response body, the number it connects (or None) and why not.

    Pure, so it is cached: parsing a number with libphonenumber costs more than the rest of a request.
    """
    try:
        number = normalize_callee(callee, policy)
    except NumberError as refusal:
        ncco = refusal_ncco(refusal.spoken, plan.language)
        return ncco, ncco_body(ncco), None, refusal.detail
    ncco = connect_ncco(number, plan)
    return ncco, ncco_body(ncco), number, None


def parse_ncco(actions) -> list:
    """Check an NCCO with the Vonage SDK's models and return them; raise ValueError saying what is wrong.

    Every key must be one the model knows: an action is valid only if it survives a round trip.
    """
    # Imported here: the models load the SDK's REST client, which the server itself never needs.
    from pydantic import ValidationError
    from vonage_voice.models import Connect, Conversation, Input, Notify, Record, Stream, Talk, Transfer, Wait

    models = {
        "talk": Talk,
        "connect": Connect,
        "stream": Stream,
        "input": Input,
        "record": Record,
        "conversation": Conversation,
        "notify": Notify,
        "wait": Wait,
        "transfer": Transfer,
    }
    if not isinstance(actions, list) or not actions:
        raise ValueError("an NCCO must be a non-empty JSON array of actions")
    parsed_actions = []
    for index, action in enumerate(actions):
        if not isinstance(action, dict):
            raise ValueError(f"action {index} is not an object")
        model = models.get(action.get("action"))
        if model is None:
            raise ValueError(f"action {index} has unknown action {action.get('action')!r}")
        fields = {("from_" if key == "from" else key): value for key, value in action.items()}
        try:
            parsed = model.model_validate(fields)
        except (ValidationError, ValueError) as error:
            raise ValueError(f"action {index} ({action['action']}) is invalid: {error}") from None
        if parsed.model_dump(mode="json", by_alias=True, exclude_none=True) != action:
            raise ValueError(f"action {index} ({action['action']}) has fields the SDK's model does not know")
        parsed_actions.append(parsed)
    return parsed_actions
