"""What the server does on its own, away from any request: work taken from the call log and carried out until it is
done, whatever fails on the way (docs/architecture.md).

jobs        the job runner: each kind of job on a thread of its own, in serve.py's process (or the app's own)
call_requests   the Voice API request of each action on a call in progress, and the host it goes to (pure)
call_control    acting on a call in progress (CALL_CONTROL): the one controller the route and the commands share
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outbound.jobs import Job, Jobs

if TYPE_CHECKING:
    from config import Settings


def background_jobs(settings: Settings) -> Jobs:
    """The runner of every job these settings call for, not started yet."""
    jobs: list[Job] = []
    return Jobs(jobs)
