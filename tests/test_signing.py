"""A forwarded message's body and headers (outbound.signing), checked with the standardwebhooks package itself."""

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from outbound.signing import Signer, envelope

OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


def test_the_body_is_type_timestamp_and_data():
    body = envelope("call.event.completed", "2026-11-24T10:00:00.000Z", {"event": {"status": "completed"}})
    assert json.loads(body) == {
        "type": "call.event.completed",
        "timestamp": "2026-11-24T10:00:00.000Z",
        "data": {"event": {"status": "completed"}},
    }


def test_the_headers_verify_with_standardwebhooks_and_carry_the_id_and_time():
    body = envelope("call.event.completed", "2026-11-24T10:00:00.000Z", {})
    now = time.time()
    headers = Signer((OLD,)).headers("key-1", body, now)
    assert headers["webhook-id"] == "key-1" and headers["webhook-timestamp"] == str(int(now))
    assert Webhook(OLD).verify(body, headers)["type"] == "call.event.completed"


def test_while_rotating_both_signatures_are_sent_and_either_secret_verifies():
    body = envelope("call.answer.decided", "2026-11-24T10:00:00.000Z", {})
    headers = Signer((OLD, NEW)).headers("key-2", body, time.time())
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(OLD).verify(body, headers)
    Webhook(NEW).verify(body, headers)


def test_a_body_changed_on_the_way_does_not_verify():
    body = envelope("call.event.completed", "2026-11-24T10:00:00.000Z", {"n": 1})
    headers = Signer((OLD,)).headers("key-3", body, time.time())
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(body.replace(b"1", b"2"), headers)
