"""What the server sends out and fetches on its own, to Vonage and to stores: work carried out until it is done,
whatever fails on the way (docs/architecture.md).

jobs             the job runner: each background job on a thread of its own, in a process beside the workers
recordings       fetching each recording from Vonage into the store, retried until it is kept; retention
recording_store  where recordings are kept: a folder, or S3
call_requests    the Voice API request of each action on a call in progress, and the host it goes to (pure)
call_control     acting on a call in progress (CALL_CONTROL): the one controller the route and the commands share
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from outbound.jobs import Job, Jobs

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from config import Settings


def background_jobs(settings: Settings, registry: CollectorRegistry | None = None) -> Jobs:
    """The runner of every job these settings call for, not started yet. What the jobs count goes in `registry`
    (under serve.py, in its metrics folder whatever the registry)."""
    from prometheus_client import CollectorRegistry

    from calllog.recordings import Recordings
    from calllog.schema import Database
    from outbound.recording_store import open_store
    from outbound.recordings import RecordingFetcher

    stopping = threading.Event()
    registry = registry if registry is not None else CollectorRegistry()
    store = open_store(settings.recordings_location, settings.recordings_s3_endpoint, settings.instance_path)
    jobs: list[Job] = [
        RecordingFetcher(settings, Recordings(Database(settings.database_url)), store, registry, stopping)
    ]
    return Jobs(jobs, stopping)
