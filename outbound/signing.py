"""A forwarded message as sent: its Standard Webhooks body and headers, signed with every FORWARD_SECRET (pure).

docs/platform.md (Forwarding): the body is {"type", "timestamp", "data"}; `webhook-id` is the message's key, the same
on every attempt; `webhook-timestamp` is the attempt's Unix time; `webhook-signature` holds one `v1,<base64>` per
secret, separated by spaces, so that a receiver still on the old secret verifies while the secret rotates.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

CONTENT_TYPE = "application/json"


def envelope(kind: str, timestamp: str, data: dict) -> bytes:
    """The JSON body of a message of type `kind`, received at `timestamp` (ISO 8601)."""
    body = {"type": kind, "timestamp": timestamp, "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class Signer:
    """Signs bodies with each of the secrets (FORWARD_SECRET: one, or two while rotating)."""

    def __init__(self, secrets: tuple[str, ...]):
        self._webhooks = [Webhook(secret) for secret in secrets]

    def headers(self, webhook_id: str, body: bytes, now: float) -> dict[str, str]:
        """The three Standard Webhooks headers (and the content type) of `body` sent at `now`."""
        moment = datetime.fromtimestamp(int(now), tz=UTC)
        signatures = " ".join(webhook.sign(webhook_id, moment, body) for webhook in self._webhooks)
        return {
            "content-type": CONTENT_TYPE,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": signatures,
        }
