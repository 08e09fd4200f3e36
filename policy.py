"""The destination policy: which numbers a call may reach (the toll-fraud guard), and numbers as Vonage writes
them. Plain values in, plain values out."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import phonenumbers
from phonenumbers import PhoneNumberType

# Vonage's number format (and the SDK's PhoneNumber pattern): E.164 digits, no '+' or '00'.
VONAGE_NUMBER_PATTERN = re.compile(r"^[1-9]\d{6,14}$")
MAX_RAW_NUMBER_LENGTH = 64
_SEPARATORS = re.compile(r"[\s\-.()/]")
# A `to` written as a phone number: digits and the separators people use, after an optional '+'. Anything else
# is an app user's name: no answer field says which of the two the Client SDK was given (docs/platform.md).
_NUMBER_LIKE = re.compile(r"^\+?[\s\-.()/]*\d[\d\s\-.()/]*$")
DEFAULT_BLOCKED_TYPES = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST})
NUMBER_TYPE_NAMES = {
    value: name for name, value in vars(PhoneNumberType).items() if name.isupper() and isinstance(value, int)
}


def load_number_metadata() -> None:
    """Load libphonenumber's data for every region now (about 1.5 MiB, 60 ms). It otherwise imports a region's
    module the first time a number of that region is parsed: at request time, where a process out of file
    descriptors cannot import, and a call would be refused for it."""
    phonenumbers.PhoneMetadata.load_all()


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
    # The application's other numbers (INBOUND_ROUTES): an app user calling one would ring the app back.
    application_numbers: frozenset[str] = frozenset()


def looks_like_phone_number(to: str) -> bool:
    """Whether a callee is written as a phone number (447700900000, +44 7700 900000) rather than a user's name."""
    return bool(_NUMBER_LIKE.match(to.strip()))


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
    if digits in policy.application_numbers:
        raise NumberError(
            f"{digits} is one of this application's numbers (INBOUND_ROUTES); a call is never bridged back to itself",
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


@functools.lru_cache(maxsize=4096)
def vonage_digits(raw: str | None, default_region: str | None) -> str | None:
    """`raw` in Vonage's digits, or None when it is not a phone number."""
    if not raw or not looks_like_phone_number(raw):
        return None
    try:
        return normalize_number(raw, default_region)
    except NumberError:
        return None


# The hosts that may be sent the application's JWT (docs/platform.md, "Vonage's API hosts"): Vonage's two API hosts
# and their regional twins (api-us.vonage.com, api-eu-3.nexmo.com), over HTTPS on the usual port, compared exactly.
# A substring test (as the SDK's "contains vonage.com") lets vonage.com.attacker.example through.
_VONAGE_API_HOST = re.compile(r"api(?:-[a-z]{2}(?:-\d{1,2})?)?\.(?:nexmo|vonage)\.com")


def vonage_url_refusal(url: object, extra_hosts: tuple[str, ...] = ()) -> str | None:
    """Why `url` must not be sent the application's JWT, or None when it is one of Vonage's API hosts over HTTPS.

    `extra_hosts` (VONAGE_TRUSTED_HOSTS: `host` or `host:port`, lowercase) are trusted as well, exactly as written:
    they are for a stand-in of Vonage in tests."""
    if not isinstance(url, str) or not url:
        return "no URL was given"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{url[:200]!r} is not a URL"
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        return f"{url[:200]} is not HTTPS"
    if parts.username is not None or parts.password is not None:
        return f"the URL for {parts.hostname} carries a user name or password"
    if not host:
        return f"{url[:200]!r} names no host"
    if (f"{host}:{port}" if port is not None else host) in extra_hosts:
        return None
    if port not in (None, 443) or not _VONAGE_API_HOST.fullmatch(host):
        shown = host if port is None else f"{host}:{port}"
        return f"{shown} is not one of Vonage's API hosts (api.nexmo.com, api.vonage.com, api-<region>...)"
    return None
