"""What the server sends out and fetches on its own, to Vonage and to stores: work carried out until it is done,
whatever fails on the way (docs/architecture.md).

jobs             the job runner: each background job on a thread of its own, in a process beside the workers
process          the job runner as `make run` starts it: a process of its own beside the writer
retries          when a failed download or a throttled action is tried again, and Retry-After (pure)
recordings       fetching each recording from Vonage into the store, retried until it is kept; retention
recording_store  where recordings are kept: a folder, or S3
call_requests    the Voice API request of each action on a call in progress, and the host it goes to (pure)
call_control     acting on a call in progress (CALL_CONTROL): the one controller the route and the commands share
forwarding       every stored event delivered to the user's app (FORWARD_URL), signed as Standard Webhooks
signing          a forwarded message's body and signed headers (pure)
retry_schedule   when a failed delivery is tried again: the Standard Webhooks schedule (pure)
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
        RecordingFetcher(
            settings, Recordings(Database(settings.database_url, sync_each_commit=False)), store, registry, stopping
        )
    ]
    if settings.forward_urls:
        jobs.append(forwarder(settings, registry))
    return Jobs(jobs, stopping)


def forwarder(settings: Settings, registry: CollectorRegistry) -> Job:
    """The forwarding job of these settings (FORWARD_URL set)."""
    from calllog.schema import Database
    from outbound.forwarding import Forwarder
    from outbound.signing import Signer
    from runtime.metrics import ForwardingMetrics

    metrics = ForwardingMetrics(registry, settings.forward_urls)
    signer = Signer(settings.forward_secrets)
    database = Database(settings.database_url, sync_each_commit=False)  # what waits is the writer's, on disk
    return Forwarder(database, settings.forward_urls, signer, settings.forward_timeout, metrics)
