"""Reading webhook payloads: the query-string parser and how requests with and without bodies are read."""

import io
import json
import random
from urllib.parse import parse_qsl

import pytest

from edge.payloads import MAX_BODY_BYTES, MAX_DEPTH, PayloadError, first_values, parse_query, read_payload
from events import Payload


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


JSON = "application/json"
EVENT = b'{"status": "started", "uuid": "u1"}'


@pytest.mark.parametrize(
    "method, content_type, body, query, form, expected",
    [
        # A GET, or a POST with no body, is its query.
        ("GET", None, b"", {"to": "447700900000"}, None, Payload({"to": "447700900000"})),
        ("POST", JSON, b"  \n", {"to": "1"}, None, Payload({"to": "1"})),
        # A JSON object alone keeps its text (stored as received); JSON types with parameters or +json suffixes too.
        ("POST", JSON, EVENT, {}, None, Payload({"status": "started", "uuid": "u1"}, EVENT.decode())),
        (
            "POST",
            "application/json; charset=utf-8",
            EVENT,
            {},
            None,
            Payload({"status": "started", "uuid": "u1"}, EVENT.decode()),
        ),
        (
            "POST",
            "application/vnd.vonage+json",
            EVENT,
            {},
            None,
            Payload({"status": "started", "uuid": "u1"}, EVENT.decode()),
        ),
        ("POST", None, EVENT, {}, None, Payload({"status": "started", "uuid": "u1"}, EVENT.decode())),
        # With a query, the body's fields are laid over it and the text is not the fields any more.
        (
            "POST",
            JSON,
            EVENT,
            {"uuid": "q", "extra": "1"},
            None,
            Payload({"uuid": "u1", "extra": "1", "status": "started"}),
        ),
        ("POST", JSON, b"{}", {"to": "1"}, None, Payload({"to": "1"})),
        # Forms: urlencoded is parsed here, multipart arrives parsed.
        (
            "POST",
            "application/x-www-form-urlencoded",
            b"status=started&uuid=u1",
            {},
            None,
            Payload({"status": "started", "uuid": "u1"}),
        ),
        (
            "POST",
            "multipart/form-data; boundary=x",
            b"--x...",
            {},
            {"status": "ringing"},
            Payload({"status": "ringing"}),
        ),
        # A GET's body is never read.
        ("GET", JSON, b"not json", {"to": "1"}, None, Payload({"to": "1"})),
    ],
)
def test_read_payload_reads_each_shape_of_request(method, content_type, body, query, form, expected):
    assert read_payload(method, content_type, body, query, form) == expected


@pytest.mark.parametrize(
    "method, content_type, body, query, status, message",
    [
        ("GET", None, b"", {}, 400, "the request carries no fields"),
        ("POST", JSON, b"", {}, 400, "the request carries no fields"),
        ("POST", JSON, b" " * (MAX_BODY_BYTES + 1) + b"{}", {}, 413, f"the body is {MAX_BODY_BYTES + 3} bytes, over"),
        ("POST", "application/x-www-form-urlencoded", b"&&", {}, 400, "the form body carries no fields"),
        ("POST", "application/x-www-form-urlencoded", b"a=\xff", {}, 400, "the form body is not UTF-8 text"),
        ("POST", JSON, b"\xff\xfe", {}, 400, "the body is not UTF-8 text"),
        ("POST", None, b"status=started", {}, 400, "the body has no Content-Type and is not JSON"),
        ("POST", JSON, b"{status: started}", {}, 400, "the body is not valid JSON (Expecting property name"),
        ("POST", "text/plain", b"hello", {}, 400, "Content-Type text/plain is not supported"),
        ("POST", JSON, b"[1, 2]", {}, 400, "the body is a JSON array, not an object"),
        ("POST", JSON, b'"started"', {}, 400, "the body is a JSON string, not an object"),
        ("POST", JSON, b"null", {}, 400, "the body is a JSON null, not an object"),
        ("POST", JSON, b"true", {}, 400, "the body is a JSON boolean, not an object"),
        ("POST", JSON, b"4", {}, 400, "the body is a JSON number, not an object"),
        ("POST", JSON, b"{}", {}, 400, "the body is an empty JSON object"),
    ],
)
def test_read_payload_names_what_is_wrong_with_a_request_it_cannot_read(
    method, content_type, body, query, status, message
):
    with pytest.raises(PayloadError) as refused:
        read_payload(method, content_type, body, query)
    assert refused.value.status == status
    assert refused.value.message.startswith(message)


@pytest.mark.parametrize(
    "body, problem",
    [
        (b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
        (b'{"n": ' + b"9" * 5000 + b"}", "Exceeds the limit"),
    ],
)
def test_read_payload_keeps_a_well_formed_body_it_cannot_read_as_received_with_the_reason(body, problem):
    payload = read_payload("POST", JSON, body, {})
    assert payload.fields == {} and payload.text == body.decode()
    assert payload.problem.startswith("the body could not be read as JSON: ") and problem in payload.problem


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
