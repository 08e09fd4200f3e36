"""The background jobs as a process of their own, as `make run` starts them: `python -m outbound.process`.

Like the call-log writer, it stops when serve.py closes its standard input, after the workers; and at once when
serve.py is gone however it ended, since every job's work is in the database and the next run takes it up.
"""

from __future__ import annotations

import logging
import sys
import threading

from runtime.logs import LOGGER_NAME
from runtime.stop_signals import child_of_the_server, stop_when_parent_exits, when_stdin_closes

log = logging.getLogger(f"{LOGGER_NAME}.jobs")


def main() -> int:
    # Imported here, after serve.py set PROMETHEUS_MULTIPROC_DIR in this process's environment.
    from outbound import background_jobs

    settings = child_of_the_server()
    if settings is None:
        return 2
    stop = threading.Event()
    when_stdin_closes(stop.set)
    stop_when_parent_exits(stop.set)
    jobs = background_jobs(settings)
    jobs.start()
    stop.wait()
    jobs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
