"""The background jobs as a process of their own, as `make run` starts them: `python -m outbound.process`.

Like the call-log writer, it stops when serve.py closes its standard input, after the workers; and at once when
serve.py is gone however it ended, since every job's work is in the database and the next run takes it up.
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


def _stop_when_told(stop: threading.Event) -> None:
    while os.read(sys.stdin.fileno(), 4096):
        pass
    stop.set()


def main() -> int:
    # Imported here, after serve.py set PROMETHEUS_MULTIPROC_DIR in this process's environment.
    from config import ConfigError, load_settings
    from outbound import background_jobs
    from runtime.logs import configure_logging

    for group_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(group_signal, signal.SIG_IGN)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.no_color)
    stop = threading.Event()
    threading.Thread(target=_stop_when_told, args=(stop,), name="stop-when-told", daemon=True).start()
    stop_when_parent_exits(stop.set)
    jobs = background_jobs(settings)
    jobs.start()
    stop.wait()
    jobs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
