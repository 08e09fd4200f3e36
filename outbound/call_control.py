"""Acting on a call in progress (CALL_CONTROL): the one path from "hang up leg X" to Vonage's Voice API and back,
used by POST /api/calls/<leg>/actions and by `flask hangup` and its siblings alike.

The leg is looked up in the call log, the request built (outbound/call_requests.py), sent with the application's
JWT to the call's own region, tried again after Vonage's Retry-After while it answers 429 (within MAX_TRIES and
MAX_WAIT_SECONDS), and every attempt stored in the call's timeline and logged. Loaded only with CALL_CONTROL=on: it
brings PyJWT, cryptography and requests into the process.
"""

from __future__ import annotations

import logging
import netrc  # noqa: F401  requests imports it on a session's first request (it reads ~/.netrc): loaded here instead
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests

from calllog.call_actions import (
    ACCEPTED,
    NOT_SENT,
    REFUSED,
    THROTTLED,
    UNREACHABLE,
    LiveLeg,
    action_row,
    find_leg,
    record_action,
)
from calllog.schema import Database, StorageError
from config import Settings
from events import utc_timestamp
from identity.user_tokens import UserTokenSigner, application_token_claims
from outbound.call_requests import ActionError, CallRules, VoiceRequest, action_request, call_host, vonage_reason
from outbound.call_requests import retry_after_seconds as read_retry_after
from runtime.logs import LOGGER_NAME

log = logging.getLogger(f"{LOGGER_NAME}.call_control")

# Vonage answers 429 above about 15 requests a second on these routes (docs/platform.md): an action is tried at most
# MAX_TRIES times, waiting what Retry-After says, and never waits more than MAX_WAIT_SECONDS in all.
MAX_TRIES = 3
MAX_WAIT_SECONDS = 10.0
TOKEN_TTL = timedelta(minutes=5)
UNKNOWN_LEG = "unknown leg"


@dataclass(frozen=True)
class ActionResult:
    """What came of one action: the HTTP status the API answers with, the outcome (calllog.call_actions'
    ACTION_OUTCOMES, or UNKNOWN_LEG), one line for a person, and the leg as the call log knows it."""

    status: int
    outcome: str
    message: str
    leg: LiveLeg | None = None
    retry_after: int | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome == ACCEPTED


class CallController:
    """Sends actions to the Voice API with the application's key, loaded once (ConfigError if it cannot sign)."""

    def __init__(self, settings: Settings, database: Database, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.database = database
        self.signer = UserTokenSigner(settings.private_key)
        self.session = requests.Session()
        self._sleep = sleep

    def close(self) -> None:
        self.session.close()

    def act(
        self,
        leg_uuid: str,
        action: str,
        fields: Mapping,
        rules: CallRules,
        requested_by: str,
        on_throttled: Callable[[float], None] = lambda seconds: None,
    ) -> ActionResult:
        """Do `action` (with `fields`) to the leg `leg_uuid`, for `requested_by` (an address, or "command line").
        Never raises but StorageError, when the call log cannot be read."""
        leg = find_leg(self.database, leg_uuid)
        if leg is None:
            message = f"no leg {leg_uuid[:100]} in the call log; `flask live` lists the legs in progress"
            log.warning("%s %s from %s refused: %s", action, leg_uuid[:100], requested_by, message)
            return ActionResult(404, UNKNOWN_LEG, message)
        record = _Recorder(self.database, leg, leg_uuid, str(action)[:16], requested_by)
        try:
            request = action_request(leg_uuid, action, fields, rules)
        except ActionError as error:
            return record(400, NOT_SENT, str(error))
        record.detail = request.detail
        if not leg.in_progress:
            message = f"leg {leg_uuid} has ended ({leg.status or 'no status'}); only a call in progress can be acted on"
            return record(409, NOT_SENT, message)
        base, refusal = call_host(leg.region_url, self.settings.api_host, self.settings.trusted_hosts)
        if base is None:
            return record(502, NOT_SENT, refusal)
        return self._send(record, base, request, on_throttled)

    def _send(self, record: _Recorder, base: str, request: VoiceRequest, on_throttled) -> ActionResult:
        waited = 0.0
        for attempt in range(1, MAX_TRIES + 1):
            try:
                response = self.session.request(
                    request.method,
                    base + request.path,
                    json=request.body,
                    headers={"Authorization": f"Bearer {self._token()}"},
                    timeout=self.settings.vonage_timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as error:
                return record(502, UNREACHABLE, f"cannot reach Vonage at {base}: {type(error).__name__}")
            if 200 <= response.status_code < 300:
                return record(202, ACCEPTED, f"Vonage accepted it ({response.status_code})", response.status_code)
            reason = vonage_reason(response.status_code, response.text)
            if response.status_code != 429:
                if response.status_code == 404:
                    reason += f"; the call may have ended, or live in another region than {base}"
                return record(502, REFUSED, reason, response.status_code)
            delay = read_retry_after(response.headers.get("Retry-After"))
            if attempt == MAX_TRIES or waited + delay > MAX_WAIT_SECONDS:
                message = f"Vonage is still throttling (429) after {attempt} tries; try again in {delay:g} s"
                return record(503, REFUSED, message, 429, retry_after=max(1, round(delay)))
            record(202, THROTTLED, f"throttled, retrying in {delay:g} s", 429)
            on_throttled(delay)
            self._sleep(delay)
            waited += delay
        raise AssertionError("unreachable: the last try returns")

    def _token(self) -> str:
        # A new token each request: a fresh jti, and never one that expires between a 429 and its retry.
        claims = application_token_claims(self.settings.application_id, datetime.now(UTC), TOKEN_TTL)
        return self.signer.sign(claims)


class _Recorder:
    """Stores each attempt of one action in its call's timeline and logs it; returns the action's result."""

    def __init__(self, database: Database, leg: LiveLeg, leg_uuid: str, action: str, requested_by: str):
        self.database, self.leg, self.leg_uuid = database, leg, leg_uuid
        self.action, self.requested_by = action, requested_by
        self.detail: str | None = None

    def __call__(
        self,
        status: int,
        outcome: str,
        message: str,
        vonage_status: int | None = None,
        retry_after: int | None = None,
    ) -> ActionResult:
        row = action_row(
            self.leg,
            self.leg_uuid,
            self.action,
            self.detail,
            utc_timestamp(time.time()),
            self.requested_by,
            outcome,
            vonage_status,
            message,
        )
        level = logging.INFO if outcome in (ACCEPTED, THROTTLED) else logging.WARNING
        log.log(level, "%s on leg %s from %s: %s: %s", self.action, self.leg_uuid, self.requested_by, outcome, message)
        try:
            record_action(self.database, row)
        except StorageError as error:
            log.error("the %s on leg %s is not in the call log: %s", self.action, self.leg_uuid, error)
            message += f" (not stored in the call log: {error})"
        return ActionResult(status, outcome, message, self.leg, retry_after)
