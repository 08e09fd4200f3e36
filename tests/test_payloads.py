"""Reading webhook payloads: the query-string parser and how requests with and without bodies are read."""

import io
import json
import random
from urllib.parse import parse_qsl

import pytest

from edge.payloads import first_values, parse_query


@pytest.mark.parametrize(
    "query",
    [
        b"to=447700900000&from_user=Alice",
        b"region_url=https%3A%2F%2Fapi-eu-1.vonage.com&to=%2B44+7700+900000",
        b"a=1&a=2&&b&c=",
        b"name=Jos%C3%A9&broken=%E9%ZZ",
        b"",
    ],
)
def test_parse_query_reads_what_parse_qsl_reads(query):
    assert parse_query(query) == parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True)


def test_parse_query_agrees_with_parse_qsl_on_random_queries():
    chooser = random.Random(20261124)
    alphabet = "ab=&%+2F0é; x"
    for _ in range(20_000):
        query = "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 14))).encode()
        assert parse_query(query) == parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True), query


def test_first_values_keeps_the_first_of_repeated_parameters():
    assert first_values([("to", "1"), ("from", "2"), ("to", "3")]) == {"to": "1", "from": "2"}


def test_chunked_event_without_content_length_is_read(client):
    body = json.dumps({"status": "started", "uuid": "chunked-leg", "conversation_uuid": "CON-chunked"}).encode()
    response = client.post(
        "/voice/event",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 204
    stored = client.get("/api/calls/CON-chunked", headers={"Authorization": "Bearer test-call-log-token-0123456789"})
    assert stored.status_code == 200
    assert "chunked-leg" in stored.get_data(as_text=True)


def test_repeated_query_parameter_answers_with_the_first(client):
    response = client.get("/voice/answer?to=447700900000&to=447700900999")
    assert response.get_json()[1]["endpoint"][0]["number"] == "447700900000"
