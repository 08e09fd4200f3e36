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


def test_the_receiver_in_docs_forwarding_verifies_a_forwarded_message_and_drops_its_repeat():
    from pathlib import Path

    document = (Path(__file__).resolve().parent.parent / "docs" / "forwarding.md").read_text()
    source = document.split("```python\n", 1)[1].split("```", 1)[0]
    handled_calls = []
    namespace = {
        "__name__": "receiver",  # Flask finds the app's folder by its module's name
        "open_ticket": handled_calls.append,
        "bill": lambda *args: handled_calls.append(args),
        "log_refusal": handled_calls.append,
    }
    exec(compile(source, "docs/forwarding.md", "exec"), namespace)
    client = namespace["app"].test_client()
    data = {"event": {"status": "busy"}, "leg": {"uuid": "leg-1", "status": "busy", "duration": None, "price": None}}
    body = envelope("call.event.completed", "2026-11-24T10:00:00.000Z", data)
    headers = Signer((OLD,)).headers("key-9", body, time.time())
    assert [client.post("/vonage-events", data=body, headers=headers).status_code for _ in range(2)] == [204, 204]
    assert handled_calls == [{"status": "busy"}], "handled once, the repeat dropped"
    forged = {**headers, "webhook-signature": Signer((NEW,)).headers("key-9", body, time.time())["webhook-signature"]}
    assert client.post("/vonage-events", data=body, headers=forged).status_code == 400
