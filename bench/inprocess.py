"""The request path's own CPU cost: the Flask app called directly, on one thread, with no HTTP server at all.

`make bench` runs this beside the wrk rounds. What a request costs here is what no server can take away, so
cores / cost is the most requests per second this code could serve on this machine whatever runs it.
It prints one JSON line: CPU µs per request for the cheapest route, a signed answer and a signed event.

    python -m bench.inprocess WORKDIR [REQUESTS]
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from werkzeug.test import EnvironBuilder

from bench.run import SECRET, TOKEN, answer_request, event_request

WARM_UP = 300


def environs(kind: str, count: int) -> list[dict]:
    """`count` distinct WSGI environs for one kind of request, signed as the wrk rounds sign theirs."""
    now = time.time()
    built = []
    for index in range(count):
        if kind == "cheapest":
            builder = EnvironBuilder(path="/")
        elif kind == "answer":
            query, auth = answer_request(f"inproc-{now}", index, now)
            builder = EnvironBuilder(path="/voice/answer", query_string=query, headers={"Authorization": auth})
        else:
            body, auth = event_request(f"inproc-{now}", index, now)
            builder = EnvironBuilder(
                path="/voice/event",
                method="POST",
                data=body.encode(),
                content_type="application/json",
                headers={"Authorization": auth},
            )
        built.append(builder.get_environ())
    return built


def cpu_per_request(wsgi, batch: list[dict]) -> float:
    """CPU µs per request over `batch` (every thread of this process: the log thread's share counts too)."""
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    started = time.process_time()
    for environ in batch:
        for _ in wsgi(environ, start_response):
            pass
    time.sleep(0.05)  # let the log thread write what these requests queued, inside the measurement
    used = time.process_time() - started
    refused = [status for status in statuses if not status.startswith("2")]
    if refused:
        raise SystemExit(f"inprocess: {len(refused)} requests were refused (first: {refused[0]}); nothing measured")
    return used / len(batch) * 1e6


def main(workdir: Path, count: int) -> dict:
    from runtime.logs import output_handler
    from serve import WriterProcess

    writer = WriterProcess(str(workdir / "inprocess-writer.sock"))
    database_url = f"sqlite:///{workdir / 'inprocess.db'}"
    os.environ["DATABASE_URL"] = database_url  # the writer process reads its settings from the environment
    writer.start()
    # Lines are still formatted and written, as under wrk, but not onto the bench's table.
    with open(os.devnull, "w") as devnull:
        stream = output_handler().setStream(devnull)
        try:
            return measure(database_url, writer.socket_path, count)
        finally:
            output_handler().setStream(stream)
            writer.stop()


def measure(database_url: str, writer_socket: str, count: int) -> dict:
    """CPU µs per request of each kind, through an app that writes to the writer at `writer_socket`."""
    from app import close_app, create_app
    from config import settings_from

    app = None
    try:
        settings = settings_from(
            {"DATABASE_URL": database_url, "VONAGE_SIGNATURE_SECRET": SECRET, "CALL_LOG_TOKEN": TOKEN}
        )
        app = create_app(settings=replace(settings, writer_socket=writer_socket))
        gc.collect()
        gc.freeze()  # as serve.production_app does
        costs = {}
        for kind in ("cheapest", "answer", "event"):
            batch = environs(kind, WARM_UP + count)
            cpu_per_request(app.wsgi_app, batch[:WARM_UP])
            costs[kind] = cpu_per_request(app.wsgi_app, batch[WARM_UP:])
        return costs
    finally:
        if app is not None:
            close_app(app)
        gc.unfreeze()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 5000)))
