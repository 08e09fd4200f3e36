"""A user's app receiving forwarded events, in a process of its own: every request verified with the standardwebhooks
package, and written down, one JSON line each, in a file the test reads.

    python tests/support/receiver.py PORT SECRET LOG [--fail-first N --status S [--retry-after R]] [--hang-first N]

The first N requests of each webhook-id are answered S (with Retry-After R), or held past the forwarder's timeout
(--hang-first); the rest 204. A request whose signature does not verify is answered 400 and written down as such.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HANG_SECONDS = 30
HUNG = 0  # what the log says a held request was answered


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("secret")
    parser.add_argument("log")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--status", type=int, default=500)
    parser.add_argument("--retry-after")
    parser.add_argument("--hang-first", type=int, default=0)
    options = parser.parse_args()
    webhook = Webhook(options.secret)
    seen: Counter = Counter()
    lock = threading.Lock()
    log = Path(options.log)

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            webhook_id = headers.get("webhook-id")
            try:
                message = webhook.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                message, verified = {}, False
            with lock:
                seen[webhook_id] += 1
                attempt = seen[webhook_id]
            answer = 204 if verified else 400
            hang = verified and attempt <= options.hang_first
            if hang:
                answer = HUNG
            elif verified and attempt <= options.fail_first:
                answer = options.status
            record = {
                "id": webhook_id,
                "verified": verified,
                "type": message.get("type"),
                "data": message.get("data"),
                "signatures": len(headers.get("webhook-signature", "").split(" ")),
                "attempt": attempt,
                "answered": answer,
            }
            with lock, log.open("a") as file:
                file.write(json.dumps(record) + "\n")
            if hang:
                # Held past the forwarder's timeout; whatever comes after is answered to nobody, and is no 2xx.
                time.sleep(HANG_SECONDS)
                answer = 503
            self.send_response(answer)
            if answer in (429, 503) and options.retry_after is not None:
                self.send_header("Retry-After", options.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", options.port), Receiver)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
