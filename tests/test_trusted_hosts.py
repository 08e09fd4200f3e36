"""Which URLs may be sent the application's JWT (policy.vonage_url_refusal): Vonage's API hosts, exactly, over
HTTPS, and the hosts VONAGE_TRUSTED_HOSTS adds; nothing else, however much it looks like them."""

from __future__ import annotations

import pytest

from config import ConfigError, settings_from
from policy import vonage_url_refusal

TRUSTED = [
    "https://api.nexmo.com/v1/files/aaaa-bbbb",
    "https://api.vonage.com/v1/files/aaaa",
    "https://api-us.vonage.com/v1/calls/abc",
    "https://api-eu.nexmo.com/v1/files/x",
    "https://api-ap-3.vonage.com/v1/files/x",
    "https://API.Nexmo.COM/v1/files/x",
    "https://api.nexmo.com:443/v1/files/x",
]
REFUSED = {
    "http://api.nexmo.com/v1/files/x": "is not HTTPS",
    "https://api.nexmo.com.example.com/v1/files/x": "is not one of Vonage's API hosts",
    "https://example.com/api.nexmo.com/v1/files/x": "is not one of Vonage's API hosts",
    "https://evilapi.nexmo.com/x": "is not one of Vonage's API hosts",
    "https://rest.nexmo.com/x": "is not one of Vonage's API hosts",
    "https://nexmo.com/x": "is not one of Vonage's API hosts",
    "https://api.nexmo.com:8443/x": "is not one of Vonage's API hosts",
    "https://user:secret@api.nexmo.com/x": "carries a user name or password",
    "https://127.0.0.1:8443/x": "is not one of Vonage's API hosts",
    "https:///x": "names no host",
    "https://[::1/x": "is not a URL",
    "": "no URL was given",
}


@pytest.mark.parametrize("url", TRUSTED)
def test_vonage_api_hosts_are_trusted(url):
    assert vonage_url_refusal(url) is None


@pytest.mark.parametrize("url, reason", REFUSED.items())
def test_anything_else_is_refused_with_the_reason(url, reason):
    refusal = vonage_url_refusal(url)
    assert refusal is not None and reason in refusal
    assert "secret" not in refusal


def test_a_non_text_url_is_refused():
    assert vonage_url_refusal(None) == "no URL was given"
    assert vonage_url_refusal(["https://api.nexmo.com/"]) == "no URL was given"


def test_trusted_hosts_add_exactly_the_host_and_port_written():
    extra = settings_from({"VONAGE_TRUSTED_HOSTS": " 127.0.0.1:8443, Localhost "}).trusted_hosts
    assert extra == ("127.0.0.1:8443", "localhost")
    assert vonage_url_refusal("https://127.0.0.1:8443/v1/files/x", extra) is None
    assert vonage_url_refusal("https://localhost/v1/files/x", extra) is None
    assert vonage_url_refusal("https://127.0.0.1:9443/v1/files/x", extra) is not None
    assert (
        vonage_url_refusal("http://127.0.0.1:8443/v1/files/x", extra) == "http://127.0.0.1:8443/v1/files/x is not HTTPS"
    )


def test_a_bad_trusted_host_stops_start_up_with_one_line():
    with pytest.raises(ConfigError) as refused:
        settings_from({"VONAGE_TRUSTED_HOSTS": "https://127.0.0.1:8443/"})
    assert str(refused.value).startswith("VONAGE_TRUSTED_HOSTS: 'https://127.0.0.1:8443/' is not a host or host:port")
