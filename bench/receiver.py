"""The user's app for `BENCH_FORWARD=1 make bench`: `python -m bench.receiver PORT SECRET`, a local receiver that
verifies every forwarded message with standardwebhooks, answers 204, and says at GET /received how many distinct
webhook-ids it got, how many requests, and how many failed to verify."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main(port: int, secret: str) -> None:
    webhook = Webhook(secret)
    ids: set[str] = set()
    counts = {"requests": 0, "unverified": 0}
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                webhook.verify(body, {name.lower(): value for name, value in self.headers.items()}, json_parse=False)
                verified = True
            except WebhookVerificationError:
                verified = False
            with lock:
                counts["requests"] += 1
                if verified:
                    ids.add(self.headers["webhook-id"])
                else:
                    counts["unverified"] += 1
            self._answer(204 if verified else 400, b"")

        def do_GET(self):
            with lock:
                body = json.dumps({"received": len(ids), **counts}).encode()
            self._answer(200, body)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
