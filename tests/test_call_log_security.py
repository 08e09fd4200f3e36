"""The call log's page, API and /metrics as a browser and a script reach them (issue #24): the cookie the page sets,
the headers every response carries, where the token may come from, the limit on wrong tokens per client address,
and conversation ids with any character in them. The browser's side of the same is in test_page.py."""

import logging
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import CALL_LOG_TOKEN, ROOT

AUTH = {"Authorization": f"Bearer {CALL_LOG_TOKEN}"}
WRONG = "wrong-token-but-long-enough-0123"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "media-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def set_cookies(response) -> dict[str, str]:
    """Each cookie a response sets, by name: the whole Set-Cookie line."""
    return {line.split("=", 1)[0]: line for line in response.headers.getlist("Set-Cookie")}


def attributes(set_cookie: str) -> dict[str, str]:
    """A Set-Cookie line's attributes, by lower-cased name ("" for a flag such as HttpOnly)."""
    found = {}
    for part in set_cookie.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        found[name.lower()] = value
    return found


# The cookie.


def test_the_page_moves_the_token_into_a_host_only_strict_cookie_named_after_the_port(client):
    response = client.get(f"/calls?token={CALL_LOG_TOKEN}", base_url="http://127.0.0.1:3000")
    assert response.status_code == 302 and "token" not in response.headers["Location"]
    cookies = set_cookies(response)
    assert list(cookies) == ["call_log_token_3000"]
    assert cookies["call_log_token_3000"].startswith(f"call_log_token_3000={CALL_LOG_TOKEN};")
    cookie = attributes(cookies["call_log_token_3000"])
    assert "httponly" in cookie and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert "domain" not in cookie  # host-only: no other host under the same domain gets it
    assert "secure" not in cookie  # plain http: a browser would drop a Secure cookie set over it


@pytest.mark.parametrize(
    ("base_url", "headers", "name"),
    [
        ("http://calls.example", {}, "call_log_token_80"),
        ("https://calls.example", {}, "call_log_token_443"),
        ("https://calls.example:8443", {}, "call_log_token_8443"),
        ("http://[::1]:3001", {}, "call_log_token_3001"),
        ("http://abc123.ngrok.app", {"X-Forwarded-Proto": "https"}, "call_log_token_443"),
    ],
)
def test_the_cookie_is_named_after_the_port_the_browser_reached(client, base_url, headers, name):
    response = client.get(f"/calls?token={CALL_LOG_TOKEN}", base_url=base_url, headers=headers)
    assert list(set_cookies(response)) == [name]


def test_two_servers_on_one_host_keep_their_own_cookies(client):
    client.get(f"/calls?token={CALL_LOG_TOKEN}", base_url="http://127.0.0.1:3000")
    # Cookies ignore ports: the browser sends the :3000 server's cookie to :3001 too, which must not take it.
    assert client.get("/calls", base_url="http://127.0.0.1:3000").status_code == 200
    assert client.get("/calls", base_url="http://127.0.0.1:3001").status_code == 401
    assert client.get("/api/calls", base_url="http://127.0.0.1:3000").status_code == 200


@pytest.mark.parametrize(
    ("base_url", "headers"),
    [("https://calls.example", {}), ("http://abc123.ngrok.app", {"X-Forwarded-Proto": "https"})],
)
def test_the_cookie_is_secure_when_the_request_came_over_tls(client, base_url, headers):
    response = client.get(f"/calls?token={CALL_LOG_TOKEN}", base_url=base_url, headers=headers)
    (cookie,) = set_cookies(response).values()
    assert "secure" in attributes(cookie)


@pytest.mark.parametrize("settings_env", [{"PUBLIC_URL": "https://abc123.ngrok.app"}])
def test_the_cookie_is_secure_when_the_public_url_is_https(client):
    response = client.get(f"/calls?token={CALL_LOG_TOKEN}", base_url="http://127.0.0.1:3000")
    assert "secure" in attributes(set_cookies(response)["call_log_token_3000"])


def test_the_redirect_keeps_the_address_whole_but_the_token(client):
    response = client.get(f"/calls?status=busy&token={CALL_LOG_TOKEN}&cursor=abc&number=447700900000")
    assert response.status_code == 302
    assert response.headers["Location"] == "/calls?status=busy&cursor=abc&number=447700900000"
    response = client.get(f"/calls/{quote('CON-a/b c', safe='')}/timeline?token={CALL_LOG_TOKEN}")
    assert response.status_code == 302
    assert response.headers["Location"] == "/calls/CON-a/b%20c/timeline"


# The headers.


def test_every_page_response_sends_a_strict_content_security_policy(client):
    client.get(f"/calls?token={CALL_LOG_TOKEN}")
    responses = {
        "page": client.get("/calls"),
        "list": client.get("/calls?partial=list&summary=1"),
        "timeline": client.get("/calls/CON-none/timeline"),
        "redirect": client.get(f"/calls?token={CALL_LOG_TOKEN}"),
        "401": client.get("/calls", base_url="http://127.0.0.1:3999"),
    }
    assert [response.status_code for response in responses.values()] == [200, 200, 404, 302, 401]
    for name, response in responses.items():
        assert response.headers.get("Content-Security-Policy") == CSP, name
        assert response.headers.get("X-Frame-Options") == "DENY", name
        assert response.headers.get("X-Content-Type-Options") == "nosniff", name
        assert response.headers.get("Referrer-Policy") == "no-referrer", name


def test_api_and_metrics_answers_are_nosniff_and_never_cached(client):
    responses = [
        client.get("/api/calls", headers=AUTH),
        client.get("/api/calls/CON-none", headers=AUTH),
        client.get("/api/calls?limit=0", headers=AUTH),
        client.get("/api/calls"),
        client.get("/metrics", headers=AUTH),
        client.get("/metrics"),
    ]
    assert [response.status_code for response in responses] == [200, 404, 400, 401, 200, 401]
    for response in responses:
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.request.path
        assert response.headers.get("Cache-Control") == "no-store", response.request.path


TEMPLATES = ROOT / "calllog" / "templates"
STATIC = ROOT / "calllog" / "static"


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.html")), ids=lambda path: path.name)
def test_templates_hold_nothing_the_policy_refuses(template: Path):
    """No inline script, style or event handler, and nothing loaded from another origin."""
    # Jinja's own tags (a macro's `style="full"` argument) are not HTML.
    text = re.sub(r"{%.*?%}", "", template.read_text(), flags=re.DOTALL)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "an inline <script>"
    assert "<style" not in text, "an inline <style>"
    assert not re.search(r"\sstyle=", text), "a style attribute"
    assert not re.search(r"\son[a-z]+=", text), "an inline event handler"
    assert not re.search(r"(src|href)=\"(https?:)?//", text), "something from another origin"
    assert "javascript:" not in text


def test_the_script_needs_nothing_the_policy_refuses():
    script = (STATIC / "calls.js").read_text()
    for refused in ("eval(", "new Function", ".style.", 'setAttribute("style', "cssText", "http://", "https://"):
        assert refused not in script, refused


# Where the token may come from.


@pytest.mark.parametrize("path", ["/api/calls", "/api/calls/CON-1", "/metrics"])
def test_a_token_in_the_query_string_is_refused_off_the_page(client, path):
    for headers in ({}, AUTH):  # even beside a good header: the address with the token in it is already logged
        response = client.get(f"{path}?token={CALL_LOG_TOKEN}", headers=headers)
        assert response.status_code == 401
        error = response.get_json()["error"]
        assert "Authorization: Bearer <token>" in error and "instead" in error and "?token=" in error


def test_the_api_takes_the_header_or_the_pages_cookie_and_metrics_only_the_header(client):
    assert client.get("/api/calls", headers=AUTH).status_code == 200
    assert client.get("/metrics", headers=AUTH).status_code == 200
    client.get(f"/calls?token={CALL_LOG_TOKEN}")  # the page's cookie, as its own script's fetches send it
    assert client.get("/api/calls").status_code == 200
    assert client.get("/metrics").status_code == 401


def test_the_api_refusal_says_to_send_the_header(client):
    error = client.get("/api/calls").get_json()["error"]
    assert "Authorization: Bearer <token>" in error and "?token=" not in error


# Wrong tokens, per client address.


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app):
    clock = Clock()
    app.extensions["call_log_access"].failed.clock = clock
    return clock


def failure_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_ten_wrong_tokens_in_a_minute_lock_the_address_out_of_page_api_and_metrics(client, clock, caplog):
    wrong = {"Authorization": f"Bearer {WRONG}"}
    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            assert client.get("/api/calls", headers=wrong).status_code == 401
            clock.now += 1
    lines = failure_lines(caplog)
    assert len(lines) == 10
    assert all("127.0.0.1" in line and "/api/calls" in line and WRONG not in line for line in lines)

    # Even the right token now gets 429, on each of the three, until the first failure is a minute old.
    api = client.get("/api/calls", headers=AUTH)
    assert api.status_code == 429 and api.headers["Retry-After"] == "50"
    assert "try again" in api.get_json()["error"]
    scrape = client.get("/metrics", headers=AUTH)
    assert scrape.status_code == 429 and scrape.headers["Retry-After"] == "50" and scrape.get_json()["error"]
    page = client.get(f"/calls?token={CALL_LOG_TOKEN}")
    assert page.status_code == 429 and page.headers["Retry-After"] == "50"
    assert page.mimetype == "text/html" and "Too many wrong tokens" in page.get_data(as_text=True)
    assert page.headers["Content-Security-Policy"] == CSP
    # Another address is not held up.
    other = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/api/calls", headers=AUTH, environ_base=other).status_code == 200

    clock.now += 50
    assert client.get("/api/calls", headers=AUTH).status_code == 200
    assert len(failure_lines(caplog)) == 10  # a refused request is not a failure of its own


def test_each_surface_counts_its_wrong_tokens_and_names_its_route(client, clock, caplog):
    with caplog.at_level(logging.WARNING):
        client.get(f"/calls?token={WRONG}")
        client.set_cookie("call_log_token_80", WRONG)
        client.get("/calls/CON-1/timeline")
        client.delete_cookie("call_log_token_80")
        client.get("/api/calls/CON-1", headers={"Authorization": f"Bearer {WRONG}"})
        client.get("/metrics", headers={"Authorization": f"Bearer {WRONG}"})
    lines = failure_lines(caplog)
    assert len(lines) == 4
    for line, route in zip(lines, ["/calls", "/calls/", "/api/calls/", "/metrics"], strict=True):
        assert route in line and "127.0.0.1" in line and WRONG not in line
    counted = {
        sample.labels["route"]: sample.value
        for family in text_string_to_metric_families(client.get("/metrics", headers=AUTH).get_data(as_text=True))
        if family.name == "voice_call_log_token_failures"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert counted == {"page": 2.0, "api": 1.0, "metrics": 1.0}


def test_no_token_and_a_query_token_on_the_api_are_not_counted(client, clock, caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(15):
            client.get("/calls")
            client.get("/api/calls")
            client.get("/metrics")
            client.get(f"/api/calls?token={WRONG}")
    assert failure_lines(caplog) == []
    assert client.get("/api/calls", headers=AUTH).status_code == 200


def test_the_limit_keeps_to_ten_failures_in_any_minute():
    from calllog.access import FailedTokens

    clock = Clock()
    failed = FailedTokens(clock=clock)
    for _ in range(10):
        assert failed.retry_after("198.51.100.1") is None
        failed.record("198.51.100.1")
        clock.now += 5
    assert failed.retry_after("198.51.100.1") == 10
    clock.now += 10
    # The first failure has left the window: one more try, and then a wait for the second to leave it.
    assert failed.retry_after("198.51.100.1") is None
    failed.record("198.51.100.1")
    assert failed.retry_after("198.51.100.1") == 5


def test_the_limiter_remembers_a_bounded_number_of_addresses():
    from calllog.access import FailedTokens

    clock = Clock()
    failed = FailedTokens(clock=clock, max_addresses=3)
    for _ in range(10):
        failed.record("198.51.100.1")
    for address in ("198.51.100.2", "198.51.100.3", "198.51.100.4"):
        failed.record(address)
    assert len(failed) == 3  # the one that failed longest ago is forgotten first
    assert failed.retry_after("198.51.100.1") is None
    clock.now += 61
    failed.record("198.51.100.5")
    assert len(failed) == 1  # what is older than the window is dropped as soon as anything is recorded


def test_ipv6_addresses_count_by_their_64_bit_network():
    """One IPv6 host holds a whole /64: counted address by address, it would never reach the limit."""
    from calllog.access import FailedTokens

    failed = FailedTokens(clock=Clock())
    for host in range(10):
        failed.record(f"2001:db8:1:2::{host + 1:x}")
    assert failed.retry_after("2001:db8:1:2:ffff::1") is not None
    assert failed.retry_after("2001:db8:1:3::1") is None
    assert failed.retry_after("::ffff:192.0.2.1") is None


# Conversation ids with any character Vonage might put in them.

ODD_IDS = ["CON-a/b", "CON-a//b", "/CON-lead", "CON-trail/", "CON-100% sure", "CON-x/timeline", "CON-q?#&=+"]


@pytest.mark.parametrize("conversation", ODD_IDS)
def test_conversation_ids_with_slashes_and_odd_characters_reach_the_api_and_the_timeline(client, conversation):
    event = {
        "status": "started",
        "uuid": "leg-odd-1",
        "conversation_uuid": conversation,
        "direction": "outbound",
        "from": "Alice",
        "to": "447700900000",
        "timestamp": "2026-11-24T10:00:00.000Z",
    }
    assert client.post("/voice/event", json=event).status_code == 204
    encoded = quote(conversation, safe="")
    call = client.get(f"/api/calls/{encoded}", headers=AUTH)
    assert call.status_code == 200 and call.get_json()["conversation_uuid"] == conversation
    timeline = client.get(f"/calls/{encoded}/timeline", headers=AUTH)
    assert timeline.status_code == 200 and "leg-odd-1" in timeline.get_data(as_text=True)


@pytest.mark.parametrize("settings_env, shown", [({}, True), ({"VONAGE_SIGNATURE_SECRET": "s" * 32}, False)])
def test_the_page_says_so_while_the_server_accepts_unsigned_webhooks(client, shown):
    page = client.get("/calls", headers={"Authorization": f"Bearer {CALL_LOG_TOKEN}"}).get_data(as_text=True)
    assert ('id="unsigned"' in page) is shown
