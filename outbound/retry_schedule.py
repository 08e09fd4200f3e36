"""When a delivery is tried again: the Standard Webhooks schedule with jitter, Retry-After honoured (pure).

docs/platform.md (Forwarding): 2xx ends a delivery; 410 Gone stops the endpoint; 429 and 503 may say when to come
back; anything else, a timeout or a redirect is a failure, tried again at once, then after 5 s, 5 min, 30 min, 2 h,
5 h, 10 h, 14 h, 20 h and 24 h: ten attempts over about three days, after which the delivery is kept as failed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from outbound.retries import retry_after_seconds

# Seconds before each attempt after the first fails: SCHEDULE[n] is the wait after the n-th attempt (n from 1).
SCHEDULE = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600)
ATTEMPTS = len(SCHEDULE)
# A wait is stretched by up to this fraction, at random, so that what failed together is not tried again together.
JITTER = 0.2
# The longest Retry-After honoured: a receiver asking for a week gets the schedule's last step.
LONGEST_RETRY_AFTER = SCHEDULE[-1]
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410

DELIVERED, RETRY, FAILED, STOPPED = "delivered", "retry", "failed", "stopped"


class Verdict(NamedTuple):
    """What follows an attempt: DELIVERED, RETRY after `wait` seconds, FAILED (the last attempt), or STOPPED."""

    outcome: str
    wait: float | None = None


def verdict(attempts: int, status: int | None, retry_after: str | None, now: float, random: float) -> Verdict:
    """What follows the `attempts`-th attempt (from 1), which the receiver answered `status` (None: no answer, a
    timeout or a connection refused), with its Retry-After header; `random` is a number in [0, 1) for the jitter."""
    if status is not None and 200 <= status < 300:
        return Verdict(DELIVERED)
    if status == GONE:
        return Verdict(STOPPED)
    if attempts >= ATTEMPTS:
        return Verdict(FAILED)
    wait = SCHEDULE[attempts] * (1 + JITTER * random)
    asked = retry_after_seconds(retry_after, now) if status in RETRY_AFTER_STATUSES else None
    if asked is not None and math.isfinite(asked):
        wait = min(asked, LONGEST_RETRY_AFTER)
    return Verdict(RETRY, wait)
