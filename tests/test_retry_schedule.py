"""When a failed delivery is tried again (outbound.retry_schedule): the Standard Webhooks schedule, its jitter,
Retry-After, 410 and the last attempt, as pure functions of the attempt and the answer."""

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from outbound.retry_schedule import (
    ATTEMPTS,
    DELIVERED,
    FAILED,
    JITTER,
    LONGEST_RETRY_AFTER,
    RETRY,
    SCHEDULE,
    STOPPED,
    retry_after_seconds,
    verdict,
)

NOW = 1_800_000_000.0


def test_the_schedule_is_the_specs_at_once_5s_5m_30m_2h_5h_10h_14h_20h_24h():
    hours = 3600
    assert (0, 5, 300, 1800, 2 * hours, 5 * hours, 10 * hours, 14 * hours, 20 * hours, 24 * hours) == SCHEDULE
    assert ATTEMPTS == 10


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_ends_the_delivery(status):
    assert verdict(1, status, None, NOW, 0.5).outcome == DELIVERED


@pytest.mark.parametrize("status", [None, 301, 302, 400, 401, 404, 500, 502])
def test_anything_else_a_timeout_or_a_redirect_is_tried_again_after_the_schedules_next_wait(status):
    for attempts in range(1, ATTEMPTS):
        assert verdict(attempts, status, None, NOW, 0.0) == (RETRY, SCHEDULE[attempts])


def test_the_wait_is_stretched_by_at_most_the_jitter_and_not_at_all_at_zero():
    assert verdict(3, 500, None, NOW, 0.0).wait == SCHEDULE[3]
    stretched = verdict(3, 500, None, NOW, 0.999).wait
    assert SCHEDULE[3] < stretched < SCHEDULE[3] * (1 + JITTER)


def test_after_the_last_attempt_the_delivery_is_failed_not_retried():
    assert verdict(ATTEMPTS, 500, None, NOW, 0.5).outcome == FAILED
    assert verdict(ATTEMPTS, None, None, NOW, 0.5).outcome == FAILED


def test_410_gone_stops_at_any_attempt():
    assert verdict(1, 410, None, NOW, 0.5).outcome == STOPPED
    assert verdict(ATTEMPTS, 410, None, NOW, 0.5).outcome == STOPPED


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_honoured_on_429_and_503(status):
    assert verdict(4, status, "7", NOW, 0.9) == (RETRY, 7.0)


def test_retry_after_as_an_http_date_is_honoured():
    when = format_datetime(datetime.fromtimestamp(NOW + 90, tz=UTC), usegmt=True)
    assert verdict(1, 503, when, NOW, 0.5) == (RETRY, 90.0)


def test_retry_after_is_ignored_on_other_statuses_and_capped_at_a_day():
    assert verdict(1, 500, "7", NOW, 0.0).wait == SCHEDULE[1]
    assert verdict(1, 429, str(30 * 86400), NOW, 0.0).wait == LONGEST_RETRY_AFTER


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "Mon, 99 Foo 2026"])
def test_an_unreadable_retry_after_falls_back_to_the_schedule(header):
    assert retry_after_seconds(header, NOW) is None
    assert verdict(2, 429, header, NOW, 0.0).wait == SCHEDULE[2]
