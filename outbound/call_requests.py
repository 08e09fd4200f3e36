"""The Voice API requests that act on a call in progress, built from plain values (docs/platform.md, "Acting on a
call in progress"): which method and path each action is, its body, the host it goes to, and Vonage's answer read
back into one line. Nothing here sends anything."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from ncco import CallPlan, CallRouting, talk, transfer_decision
from outbound.retries import retry_after_seconds as read_retry_after
from policy import DestinationPolicy, vonage_url_refusal

# The actions, and the field each needs (None: none). `say` and `stop-say` are the talk routes, `dtmf` the keys'.
ACTIONS = {
    "hangup": None,
    "mute": None,
    "unmute": None,
    "earmuff": None,
    "unearmuff": None,
    "say": "text",
    "stop-say": None,
    "dtmf": "digits",
    "transfer": "to",
}
# The actions that are one PUT /v1/calls/{uuid} with {"action": name}.
_CALL_ACTIONS = ("hangup", "mute", "unmute", "earmuff", "unearmuff")
DEFAULT_API_HOST = "api.nexmo.com"
MAX_TEXT = 1500  # what GREETING allows: one spoken passage
MAX_DIGITS = 100
_DIGITS = re.compile(r"[0-9*#p]+")  # p: a half-second pause between keys
MAX_REASON = 300


class ActionError(ValueError):
    """An action this server will not send: unknown, missing what it needs, or a destination the answer URL's rules
    refuse. The message names the problem and the fix."""


@dataclass(frozen=True)
class CallRules:
    """What an action's body is built with: the voice every sentence is spoken in, and the answer URL's destination
    policy, plan and routing for a transfer (the plan's event_url: where the transferred connect's outcome goes)."""

    policy: DestinationPolicy
    plan: CallPlan
    routing: CallRouting


@dataclass(frozen=True)
class VoiceRequest:
    """One request to the Voice API: `path` under the call's host, and its JSON body (None: none)."""

    method: str
    path: str
    body: dict | None
    detail: str | None  # what the action was given, for the timeline: the text, the digits, the destination


def action_request(leg_uuid: str, action: str, fields: Mapping, rules: CallRules) -> VoiceRequest:
    """The request that does `action` (ACTIONS) to the leg `leg_uuid`, with the field it needs from `fields`;
    ActionError when there is no such action, its field is missing or wrong, or a transfer's destination is refused."""
    if not isinstance(action, str) or not action:
        raise ActionError(f'the request names no action: send {{"action": ...}}, one of {", ".join(ACTIONS)}')
    if action not in ACTIONS:
        raise ActionError(f"{str(action)[:40]!r} is not an action; the actions are {', '.join(ACTIONS)}")
    needed = ACTIONS[action]
    value = _field(fields, needed, action) if needed else None
    path = f"/v1/calls/{quote(leg_uuid, safe='')}"
    if action in _CALL_ACTIONS:
        return VoiceRequest("PUT", path, {"action": action}, None)
    if action == "say":
        spoken = talk(value, rules.plan.language, rules.plan.style)
        return VoiceRequest(
            "PUT", path + "/talk", {key: item for key, item in spoken.items() if key != "action"}, value
        )
    if action == "stop-say":
        return VoiceRequest("DELETE", path + "/talk", None, None)
    if action == "dtmf":
        if not _DIGITS.fullmatch(value) or len(value) > MAX_DIGITS:
            raise ActionError(f"digits must be 1 to {MAX_DIGITS} of 0-9, * and # (p pauses), not {value[:40]!r}")
        return VoiceRequest("PUT", path + "/dtmf", {"digits": value}, value)
    ncco, _, callee, reason = transfer_decision(value, rules.policy, rules.plan, rules.routing)
    if callee is None:
        raise ActionError(f"cannot transfer to {value[:100]!r}: {reason}")
    return VoiceRequest("PUT", path, {"action": "transfer", "destination": {"type": "ncco", "ncco": ncco}}, callee)


def _field(fields: Mapping, name: str, action: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        example = {"text": '"text": "Please hold"', "digits": '"digits": "1234#"', "to": '"to": "447700900000"'}[name]
        raise ActionError(f'{action} needs {name!r}, text: for example {{"action": "{action}", {example}}}')
    value = value.strip()
    if name == "text" and len(value) > MAX_TEXT:
        raise ActionError(f"the text is {len(value)} characters long, over the limit of {MAX_TEXT}")
    return value


def call_host(region_url: str | None, api_host: str | None, trusted_hosts: tuple[str, ...]) -> tuple[str | None, str]:
    """Where a call is acted on: (its base URL, None) from its answer's `region_url`, else from VONAGE_API_HOST or
    api.nexmo.com; or (None, why not) when the region_url is not one of Vonage's API hosts: the request carries the
    application's JWT, so it is not sent at all (policy.vonage_url_refusal)."""
    if region_url:
        refusal = vonage_url_refusal(region_url, trusted_hosts)
        if refusal is not None:
            return None, f"the call's region_url is refused ({refusal}), so nothing was sent"
        return f"https://{urlsplit(region_url).netloc}", ""
    return f"https://{api_host or DEFAULT_API_HOST}", ""


def retry_after_seconds(header: str | None, default: float = 1.0) -> float:
    """A 429's Retry-After in seconds (outbound.retries reads it); `default` when it is absent or unreadable."""
    wait = read_retry_after(header, time.time())
    return default if wait is None else wait


def vonage_reason(status: int, text: str) -> str:
    """Vonage's answer in one line: its status and the error document's title, detail and invalid parameters."""
    try:
        document = json.loads(text) if text else None
    except ValueError:
        document = None
    parts = []
    if isinstance(document, dict):
        for key in ("title", "error_title", "detail", "type"):
            value = document.get(key)
            if isinstance(value, str) and value and value not in parts and not value.startswith("http"):
                parts.append(value)
        for item in document.get("invalid_parameters") or []:
            if isinstance(item, dict):
                parts.append(f"{item.get('name')}: {item.get('reason')}")
    elif text:
        parts.append(" ".join(text.split()))
    said = "; ".join(parts)
    return (f"Vonage answered {status}" + (f": {said}" if said else ""))[:MAX_REASON]
