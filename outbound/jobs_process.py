"""The background jobs as a process of their own, as `make run` starts them: `python -m outbound.jobs_process`.

Not threads of serve.py itself: granian forks its workers from serve.py (at start, and again for each worker it
respawns), and a fork made while a job's thread holds a lock (a module being imported, a connection pool's) gives a
worker that waits for that lock forever. This process is started fresh, runs on the settings serve.py handed over
(config.hand_over) with its metrics in serve.py's PROMETHEUS_MULTIPROC_DIR, and stops when its standard input closes,
or when serve.py is gone (kill -9 included): what the jobs had in hand waits in the database for the next run.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from runtime.logs import LOGGER_NAME
from runtime.stop_signals import stop_when_parent_exits

log = logging.getLogger(f"{LOGGER_NAME}.jobs")


def main() -> int:
    """Run the jobs the settings call for until standard input closes, then stop them."""
    from config import ConfigError, load_settings
    from outbound import background_jobs
    from runtime.logs import configure_logging

    for group_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(group_signal, signal.SIG_IGN)  # serve.py's to handle: it stops this process last but one
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.no_color)
    jobs = background_jobs(settings)
    told = threading.Event()
    stop_when_parent_exits(told.set)
    threading.Thread(target=_wait_for_eof, args=(told,), name="stop-when-told", daemon=True).start()
    jobs.start()
    told.wait()
    jobs.stop()
    return 0


def _wait_for_eof(told: threading.Event) -> None:
    # os.read, not sys.stdin: see calllog.writer_process._stop_when_told.
    while os.read(sys.stdin.fileno(), 4096):
        pass
    told.set()


if __name__ == "__main__":
    sys.exit(main())
