"""Webhook payloads: read what Vonage (or curl) sent, as JSON, form or query string, into one dict."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote

from events import Payload

MAX_BODY_BYTES = 64 * 1024
# Vonage's payloads are a level or two deep; deeper ones are stored as received, unread, so that showing them
# (indented JSON on the call log page, say) never meets Python's recursion limit.
MAX_DEPTH = 64
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_JSON_EXAMPLE = 'send a JSON object with Content-Type: application/json, e.g. {"status": "started", "uuid": "..."}'


class PayloadError(Exception):
    """A request whose payload cannot be read; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def read_payload(
    method: str,
    content_type: str | None,
    body: bytes,
    query: Mapping[str, str],
    form: Mapping[str, str] | None = None,
) -> Payload:
    """The webhook's payload: query parameters, overlaid by the body's JSON object or form fields.

    `content_type` is the request's header as sent (None when absent); `form` is the already
    parsed multipart form, if any. Raises PayloadError naming the problem and the fix.
    """
    fields = dict(query)
    if method == "GET" or not body.strip():
        if not fields:
            raise PayloadError(400, f"the request carries no fields; {_JSON_EXAMPLE}, or use query parameters")
        return Payload(fields)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(413, f"the body is {len(body)} bytes, over the limit of {MAX_BODY_BYTES}")
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype in _FORM_TYPES:
        fields.update(form if form is not None else _urlencoded(body))
        if not fields:
            raise PayloadError(400, f"the form body carries no fields; {_JSON_EXAMPLE}")
        return Payload(fields)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(400, "the body is not UTF-8 text; " + _JSON_EXAMPLE) from None
    json_type = not mimetype or mimetype == "application/json" or mimetype.endswith("+json")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        if not mimetype:
            raise PayloadError(400, "the body has no Content-Type and is not JSON; " + _JSON_EXAMPLE) from None
        if json_type:
            raise PayloadError(400, f"the body is not valid JSON ({error}); {_JSON_EXAMPLE}") from None
        raise PayloadError(400, f"Content-Type {mimetype} is not supported; {_JSON_EXAMPLE}") from None
    except (RecursionError, ValueError) as error:
        # Well-formed, but beyond what Python's parser reads: kept as received, with the reason.
        if not json_type:
            raise PayloadError(400, f"Content-Type {mimetype} is not supported; {_JSON_EXAMPLE}") from None
        return Payload({}, text, f"the body could not be read as JSON: {_unreadable_reason(error)}")
    if not isinstance(value, dict):
        raise PayloadError(400, f"the body is a JSON {_json_kind(value)}, not an object; {_JSON_EXAMPLE}")
    # Counting brackets is cheap; only a body with many is walked to find how deep it goes.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        return Payload({}, text, f"the body could not be read as JSON: it is nested deeper than {MAX_DEPTH} levels")
    if not value and not fields:
        raise PayloadError(400, f"the body is an empty JSON object; {_JSON_EXAMPLE}")
    if fields:
        fields.update(value)
        return Payload(fields)
    return Payload(value, text)


def _depth(value) -> int:
    """How many objects and arrays deep a parsed JSON value goes (without recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                pending.extend((child, depth + 1) for child in children)
    return deepest


def _unreadable_reason(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "it is nested too deeply"
    return str(error).split(";")[0]


def parse_query(query_string: bytes) -> list[tuple[str, str]]:
    """A query string's parameters in their order, repeats kept, blanks kept: what `parse_qsl` returns.

    Every signed webhook needs them twice (its payload hash and its fields), and this is about three
    times faster than `parse_qsl`: most parts need no unescaping.
    """
    pairs = []
    for part in query_string.decode("utf-8", "replace").split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "+" in part:
            key, value = key.replace("+", " "), value.replace("+", " ")
        if "%" in key:
            key = unquote(key, errors="replace")
        if "%" in value:
            value = unquote(value, errors="replace")
        pairs.append((key, value))
    return pairs


def first_values(pairs: list[tuple[str, str]]) -> dict:
    """The parameters as a dict; a repeated parameter keeps its first value, as Flask's `request.args` does."""
    fields: dict = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


def _urlencoded(body: bytes) -> dict:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise PayloadError(400, "the form body is not UTF-8 text") from None


def _json_kind(value) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"
