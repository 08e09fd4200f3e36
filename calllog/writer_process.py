"""The call-log writer as a process of its own, as `make run` starts it: `python -m calllog.writer_process SOCKET`.

It stops when the server tells it to, by closing its standard input, and only then: the signals a terminal or
a service manager sends to the whole process group (Ctrl-C, SIGTERM) are for serve.py, which stops the workers
first, so that every event they acknowledge is still committed, and the writer last.
"""

from __future__ import annotations

import logging
import socket
import sys
import time

from calllog.deliveries import forwarding
from calllog.schema import Database, StorageError
from calllog.writer import WriterServer, writer_server
from runtime.logs import LOGGER_NAME
from runtime.stop_signals import child_of_the_server, stop_when_parent_exits, when_stdin_closes

log = logging.getLogger(f"{LOGGER_NAME}.writer")


def wait_until_ready(socket_path: str, process, timeout: float = 30) -> None:
    """Block until the writer process accepts connections; raise RuntimeError if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the call-log writer exited with {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(socket_path)
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("the call-log writer did not start")


# How long the writer goes on once serve.py is gone, for its workers (which stop when they see it gone) to finish.
ORPHAN_GRACE_SECONDS = 10


def _stop_when_orphaned(server: WriterServer) -> None:
    """serve.py killed outright never closes the pipe, and its workers hold copies of it: stop on our own."""
    time.sleep(ORPHAN_GRACE_SECONDS)
    log.warning("the server that started this writer is gone; stopping")
    server.stop()


def main(socket_path: str) -> int:
    """Serve until standard input closes, then finish the batch in hand, close everything and exit."""
    # Imported here, in the writer's own process: serve.py imports this module before PROMETHEUS_MULTIPROC_DIR is
    # set, and prometheus_client chooses its multi-process mode once, when first imported.
    from prometheus_client import CollectorRegistry

    from runtime.metrics import Metrics

    settings = child_of_the_server()
    if settings is None:
        return 2
    database = Database(settings.database_url)
    try:
        database.ensure_schema()
    except StorageError as error:
        log.error("call log unavailable at start-up: %s", error)
    server = writer_server(
        database,
        socket_path,
        Metrics(CollectorRegistry()),
        settings.call_log_retention,
        forwarding=forwarding(settings.forward_urls, settings.forward_events),
    )
    server.listen()
    when_stdin_closes(server.stop)
    stop_when_parent_exits(lambda: _stop_when_orphaned(server))
    server.serve_forever()
    database.close()
    log.info("call-log writer stopped: every batch it received is committed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
