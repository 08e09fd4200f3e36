"""Hypothesis strategies for webhook requests: what Vonage sends, and everything else a URL on the internet gets.

JSON bodies are written by `to_json`, not json.dumps, so that they can carry what json.dumps never writes:
number literals beyond a float (1e400) or an int Python reads (5000 digits), and lone surrogates as escapes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from hypothesis import strategies as st
from werkzeug.test import encode_multipart

STATUSES = [
    "started",
    "ringing",
    "answered",
    "busy",
    "cancelled",
    "unanswered",
    "disconnected",
    "rejected",
    "failed",
    "human",
    "machine",
    "timeout",
    "completed",
]
VONAGE_FIELDS = [
    "from",
    "to",
    "uuid",
    "conversation_uuid",
    "status",
    "direction",
    "timestamp",
    "start_time",
    "end_time",
    "duration",
    "rate",
    "price",
    "network",
    "detail",
    "reason",
    "sub_state",
    "call_uuid",
    "dtmf",
    "speech",
    "recording_url",
    "conversation_uuid_from",
    "conversation_uuid_to",
    "from_user",
    "custom_data",
    "endpoint_type",
    "region_url",
]
NUMBER_LITERALS = [
    "0",
    "-0",
    "1e400",
    "-1e400",
    "1E+2",
    "0.1",
    "1e-400",
    "123456789012345678901234567890",
    "9" * 5000,
    "2147483648",
    "9223372036854775808",
]
NUMBER_STRINGS = [
    "15",
    "0.00833333",
    "1e400",
    "-1",
    "NaN",
    "Infinity",
    "-Infinity",
    "sNaN",
    "1_000",
    "١٢",
    " 7 ",
    "0x10",
    "",
    "1e999999999",
    "0" * 38 + "1e5",
    "9" * 50,
]


@dataclass(frozen=True)
class Literal:
    """A JSON number written exactly as `text`."""

    text: str


def to_json(value, ascii_only: bool = True) -> str:
    """JSON text for `value`; a Literal is written as it is."""
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, dict):
        members = (
            f"{json.dumps(key, ensure_ascii=ascii_only)}:{to_json(item, ascii_only)}" for key, item in value.items()
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def json_bytes(value, ascii_only: bool = True) -> bytes:
    """The UTF-8 body for `value`; lone surrogates are escaped even when `ascii_only` is False."""
    try:
        return to_json(value, ascii_only).encode("utf-8")
    except UnicodeEncodeError:
        return to_json(value, True).encode("utf-8")


# Text of every kind: NUL, controls, non-ASCII, and lone surrogates (which only a JSON escape can carry).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
plain_text = st.text(st.characters(codec="utf-8"), max_size=20)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
    st.sampled_from(NUMBER_STRINGS),
    st.sampled_from(NUMBER_LITERALS).map(Literal),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=8,
)


PHONE_NUMBERS = [
    "447700900000",
    "+44 7700 900000",
    "0044 7700 900000",
    "07700 900000",
    "+449098790000",
    "14155550100",
    "+1 (415) 555-0100",
    "+",
    "12",
    "٤٤٧٧٠٠٩٠٠٠٠٠",
    "447700900000" * 30,
]
CONVERSATIONS = ["CON-1", "CON-2", "CON-é", "CON-\x00", "CON-\udfff", "CON/1", "..", "x" * 120, ""]
LEGS = ["leg-1", "leg-2", "leg-3", "", "leg-\x00", "leg-\udfff", "y" * 120]
# Each Vonage field gets the kind of value it usually has, or any JSON value.
_USUAL_VALUES = {
    "status": st.sampled_from(STATUSES),
    "conversation_uuid": st.sampled_from(CONVERSATIONS),
    "uuid": st.sampled_from(LEGS),
    "call_uuid": st.sampled_from(LEGS),
    "duration": st.sampled_from(NUMBER_STRINGS),
    "price": st.sampled_from(NUMBER_STRINGS),
    "rate": st.sampled_from(NUMBER_STRINGS),
    "timestamp": st.sampled_from(["2026-11-24T07:36:05.120Z", "", "0", "9" * 80]) | st.sampled_from(NUMBER_STRINGS),
    "to": st.sampled_from(PHONE_NUMBERS),
    "from": st.sampled_from(PHONE_NUMBERS),
    "custom_data": st.sampled_from(PHONE_NUMBERS).flatmap(
        lambda number: st.sampled_from([{"to": number}, json.dumps({"to": number}), json.dumps({"to": number})[:-1]])
    )
    | st.sampled_from(["[" * 1450 + "]" * 1450, '{"to": ' + "9" * 5000 + "}", '{"to": 1e400}', '{"to": NaN}']),
}
FIELD_VALUES = {name: st.one_of(_USUAL_VALUES.get(name, any_text), json_values) for name in VONAGE_FIELDS}
# The fields every call event has: most generated events have them all.
EVENT_CORE = ["status", "uuid", "conversation_uuid", "timestamp"]


@st.composite
def event_objects(draw) -> dict:
    """A JSON object as an event or answer body: mostly shaped like Vonage's (its core fields, then others),
    with values of the usual kind or any other, and keys of any kind."""
    core = EVENT_CORE if draw(st.integers(0, 3)) else []
    names = core + draw(st.lists(st.sampled_from(VONAGE_FIELDS), unique=True, max_size=6))
    fields = {name: draw(FIELD_VALUES[name]) for name in names}
    fields.update(draw(st.dictionaries(any_text, json_values, max_size=2)))
    return fields


def flat(fields: dict) -> dict[str, str]:
    """Fields as a form or query string carries them: text keys and values."""
    return {str(key): value if isinstance(value, str) else to_json(value) for key, value in fields.items()}


def no_surrogates(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class WebRequest:
    """One request to a route: method, query string (as sent), body bytes and headers."""

    method: str
    query: str = ""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = ""

    def send(self, client, path: str, extra_headers: dict | None = None):
        url = f"{path}?{self.query}" if self.query else path
        return client.open(url, method=self.method, data=self.body, headers={**self.headers, **(extra_headers or {})})


def query_string(pairs: list[tuple[str, str]]) -> str:
    return urlencode([(no_surrogates(key), no_surrogates(value)) for key, value in pairs])


@st.composite
def object_requests(draw, fields=None) -> WebRequest:
    """A request whose fields are readable: a JSON object, a url-encoded or multipart form, or a GET query.
    `fields`: a strategy for them (event_objects() when None)."""
    values = draw(event_objects() if fields is None else fields)
    kind = draw(st.sampled_from(["json", "json", "form", "multipart", "query"]))
    if kind == "json":
        content_type = draw(
            st.sampled_from(["application/json", "application/json; charset=utf-8", "application/vnd.api+json", None])
        )
        body = json_bytes(values, draw(st.booleans()))
        return WebRequest("POST", "", body, {"Content-Type": content_type} if content_type else {}, kind)
    text_fields = {no_surrogates(key): no_surrogates(value) for key, value in flat(values).items()}
    if kind == "form":
        return WebRequest(
            "POST", "", urlencode(text_fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}, kind
        )
    if kind == "multipart":
        boundary, body = encode_multipart(text_fields, boundary=draw(st.sampled_from(["b0und", "----x", "a" * 70])))
        return WebRequest("POST", "", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, kind)
    return WebRequest("GET", query_string(list(text_fields.items())), b"", {}, kind)


JSON, FORM, MULTIPART = "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b0und"
# Bodies no well-behaved sender makes, each with the Content-Type it claims to be (any other is drawn too).
RAW_BODIES = [
    (b"[" * 10_000 + b"]" * 10_000, JSON),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, JSON),
    (b'{"status": "started", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}", JSON),
    (b'{"status": "started", "x": ' + b"[" * 900 + b"]" * 900 + b"}", JSON),
    (b'{"status": "started", "x": ' + b"[" * 70 + b"]" * 70 + b"}", JSON),
    (b'{"custom_data": "' + b"[" * 1450 + b"]" * 1450 + b'"}', JSON),
    (b'{"s": "\\udfff"}', JSON),
    (b'{"s": "\\ud800\\u0000"}', JSON),
    (b'{"\\u0000": "\\u0000"}', JSON),
    (b'{"n": 1e400}', JSON),
    (b'{"n": ' + b"9" * 5000 + b"}", JSON),
    (b'{"n": NaN, "m": -Infinity}', JSON),
    (b'{"a": 1, "a": 2}', JSON),
    (b"{}", JSON),
    (b"[]", JSON),
    (b'"text"', JSON),
    (b"null", JSON),
    (b"{", JSON),
    (b"\xff\xfe{}", JSON),
    (b"\xef\xbb\xbf{}", JSON),
    (b'{"s": "\xed\xbf\xbf"}', JSON),
    (b'{"s": "\xc3"}', JSON),
    (b"a=1&a=2&b", FORM),
    (b"a=%FF%FE&b=%ED%BF%BF", FORM),
    (b"=&=&", FORM),
    (b"&&&", FORM),
    (b"custom_data=" + b"%5B" * 1450 + b"%5D" * 1450, FORM),
    (b"--b0und\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0und--", MULTIPART),
    (
        b'--b0und\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        b"--b0und\r\nContent-Disposition: form-data\r\n\r\n2\r\n--b0und--\r\n",
        MULTIPART,
    ),
    (b'--b0und\r\nContent-Disposition: form-data; name="f"; filename="x.txt"\r\n\r\nfile\r\n--b0und--\r\n', MULTIPART),
    (b"--b0und\r\n\r\n", MULTIPART),
    (b" \t\r\n", JSON),
    (b'{"status": "started", "pad": "' + b"x" * 66_000 + b'"}', JSON),
]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=latin-1",
    "application/problem+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=iso-8859-1",
    "multipart/form-data",
    "multipart/form-data; boundary=b0und",
    "multipart/form-data; boundary=",
    "multipart/mixed; boundary=b0und",
    "application/octet-stream",
    "",
    ";;;",
    "application/json\x00",
]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


QUERY_PARTS = [
    "a",
    "a=",
    "=b",
    "%",
    "%ZZ=1",
    "%FF=%FE",
    "%ED%BF%BF=1",
    "a=%00",
    "+=+",
    "&&",
    "to=447700900000",
    "to=%2B449098790000",
    "limit=0",
    "limit=201",
    "limit=1e3",
    "limit=%EF%BC%95",
    "limit=" + "9" * 5000,
    "cursor=%FF",
    "cursor=W10",
    "cursor=" + _b64("[" * 1450 + "]" * 1450),
    "cursor=" + _b64('{"a": 1, "b": 2}'),
    "cursor=" + _b64('"ab"'),
    "cursor=" + _b64("[null, null]"),
    "cursor=" + _b64("[1e400, NaN]"),
    "status=%00",
    "status=refused",
    "status=in_progress",
    "status=completed",
    "number=%00",
    "number=%25",
    "number=_",
    "number=%2B44%207700",
    "number=" + "9" * 1000,
    "partial=list",
    "custom_data=" + "%5B" * 1450 + "%5D" * 1450,
]
# The routes' own parameters, and the names url_for() reserves for itself.
QUERY_KEYS = ["limit", "cursor", "status", "number", "partial", "to", "from_user", "custom_data", "token"]
QUERY_KEYS += ["endpoint", "_method", "_scheme", "_external", "_anchor", "values"]


@st.composite
def raw_queries(draw) -> str:
    """A query string as anyone might send it: escapes valid and not, repeats, blanks, bare keys, and odd
    values for the parameters the routes read."""
    values = plain_text | st.sampled_from(["1", "POST", "x"])
    pair = st.tuples(st.sampled_from(QUERY_KEYS) | plain_text, values).map(lambda pair: urlencode([pair]))
    parts = draw(st.lists(st.one_of(pair, st.sampled_from(QUERY_PARTS)), max_size=5))
    return "&".join(parts)


@st.composite
def any_requests(draw, methods=("GET", "POST")) -> WebRequest:
    """Any request at all: a readable one, raw bodies of every kind, with any Content-Type and query string."""
    if draw(st.booleans()):
        return draw(object_requests())
    method = draw(st.sampled_from(methods))
    body, content_type = draw(
        st.one_of(
            st.sampled_from(RAW_BODIES),
            st.tuples(st.binary(max_size=64) | json_values.map(json_bytes), st.sampled_from(CONTENT_TYPES)),
        )
    )
    if draw(st.integers(0, 2)) == 0:
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    headers = {} if content_type is None else {"Content-Type": content_type}
    return WebRequest(method, draw(raw_queries()), body if method == "POST" else b"", headers, "raw")


def path_segment(text: str) -> str:
    return quote(no_surrogates(text), safe="")
