"""When to try again: the waits of a job that failed (the recordings job's downloads, Vonage's 429 on a live-call
action), and what a server's Retry-After asks for (forwarding reads it here too). Pure."""

from __future__ import annotations

import random
import re
from email.utils import parsedate_to_datetime

FIRST_RETRY_SECONDS = 1.0  # then doubled each time, with jitter, up to LONGEST_RETRY_SECONDS
LONGEST_RETRY_SECONDS = 3600.0


def retry_delay(attempt: int, retry_after: float | None = None, draw=random.random) -> float:
    """Seconds before the next try after `attempt` failed ones: 1 s doubled each time up to an hour, each drawn
    between half and all of it (so many recordings failing at once do not come back at once), and never sooner than
    the server's Retry-After."""
    ceiling = min(FIRST_RETRY_SECONDS * 2 ** max(0, attempt - 1), LONGEST_RETRY_SECONDS)
    delay = ceiling * (0.5 + draw() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, LONGEST_RETRY_SECONDS))
    return delay


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """A Retry-After header's wait in seconds: a number of seconds, or an HTTP date; None when absent or unreadable."""
    if not header:
        return None
    text = header.strip()
    if re.fullmatch(r"\d{1,9}(\.\d+)?", text):  # seconds (a fraction too, though the standard says whole)
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:  # a date with no zone would be read in this machine's local time
        return None
    return max(0.0, when.timestamp() - now)
