"""What the server does on its own, away from any request: work taken from the call log and carried out until it is
done, whatever fails on the way (docs/architecture.md).

jobs             the job runner: each kind of job on a thread of its own (or the app's own under `flask run`)
jobs_process     the job runner as `make run` starts it: a process of its own
forwarding       every stored event delivered to the user's app (FORWARD_URL), signed as Standard Webhooks
signing          a forwarded message's body and signed headers (pure)
retry_schedule   when a failed delivery is tried again (pure)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outbound.jobs import Job, Jobs

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from config import Settings


def any_jobs(settings: Settings) -> bool:
    """Whether these settings call for any background job (serve.py starts the jobs' process only then)."""
    return bool(settings.forward_urls)


def background_jobs(settings: Settings, registry: CollectorRegistry | None = None) -> Jobs:
    """The runner of every job these settings call for, not started yet; what they count goes in `registry` (under
    serve.py, a registry of its own: prometheus_client's multi-process files are what the scrape reads)."""
    jobs: list[Job] = []
    if any_jobs(settings):
        jobs.append(forwarder(settings, registry))
    return Jobs(jobs)


def forwarder(settings: Settings, registry: CollectorRegistry | None = None) -> Job:
    """The forwarding job of these settings (FORWARD_URL set)."""
    # Here, not at the top: prometheus_client is imported only once PROMETHEUS_MULTIPROC_DIR is set (serve.py).
    from prometheus_client import CollectorRegistry

    from calllog.schema import Database
    from outbound.forwarding import Forwarder
    from outbound.signing import Signer
    from runtime.metrics import ForwardingMetrics

    metrics = ForwardingMetrics(registry or CollectorRegistry(), settings.forward_urls)
    database = Database(settings.database_url)
    signer = Signer(settings.forward_secrets)
    return Forwarder(database, settings.forward_urls, signer, settings.forward_timeout, metrics)
