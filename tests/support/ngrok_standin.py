"""Stand-ins for the ngrok loop's tests: ngrok's local API, and Vonage's Applications API for one application
(in this process for `responses`, or over HTTPS for a server in another process)."""

import copy
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.servers import free_port

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


ORIGINAL_WEBHOOKS = {
    "answer_url": {
        "address": "https://old.example/answer",
        "http_method": "GET",
        "connect_timeout": 500,
        "socket_timeout": 3000,
    },
    "event_url": {"address": "https://old.example/event", "http_method": "POST"},
}


def application(application_id: str = APPLICATION_ID) -> dict:
    """An application as Vonage's GET returns it, with settings of every kind, one of them unknown to the SDK."""
    return {
        "id": application_id,
        "name": "My voice app",
        "capabilities": {
            "voice": {
                "webhooks": copy.deepcopy(ORIGINAL_WEBHOOKS),
                "signed_callbacks": True,
                "conversations_ttl": 48,
                "leg_persistence_time": 7,
                "region": "eu-west",
            },
            "rtc": {
                "webhooks": {"event_url": {"address": "https://old.example/rtc", "http_method": "POST"}},
                "signed_callbacks": True,
            },
            "messages": {
                "webhooks": {"inbound_url": {"address": "https://old.example/in", "http_method": "POST"}},
                "version": "v1",
            },
            "network_apis": {"redirect_uri": "https://old.example/callback", "network_application_id": "2bzfIFqRG"},
        },
        "privacy": {"improve_ai": False},
        "keys": {"public_key": "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"},
        "_links": {"self": {"href": f"/v2/applications/{application_id}"}},
    }


def all_but_webhooks(document: dict) -> dict:
    """An application without its voice webhooks and read-only fields: what no command may change."""
    rest = {key: value for key, value in copy.deepcopy(document).items() if key not in ("id", "_links")}
    del rest["capabilities"]["voice"]["webhooks"]
    return rest


def webhooks_at(base: str) -> dict:
    return {
        "answer_url": {**ORIGINAL_WEBHOOKS["answer_url"], "address": f"{base}/voice/answer"},
        "event_url": {"address": f"{base}/voice/event", "http_method": "POST"},
        "fallback_answer_url": {"address": f"{base}/voice/fallback", "http_method": "GET"},
    }


class ApplicationStandIn:
    """Vonage's Applications API for one application: GET returns it as it is now, PUT replaces it. Every request
    is logged as (method, body), and whoever waits for a request is woken."""

    def __init__(self, document: dict):
        self.document = copy.deepcopy(document)
        self.requests: list[tuple[str, dict | None]] = []
        self.changed = threading.Condition()

    def handle(self, method: str, body: dict | None) -> dict:
        with self.changed:
            self.requests.append((method, copy.deepcopy(body)))
            if method == "PUT":
                self.document = {"id": self.document["id"], **copy.deepcopy(body), "_links": self.document["_links"]}
            self.changed.notify_all()
            return copy.deepcopy(self.document)

    def puts(self) -> list[dict]:
        with self.changed:
            return [body for method, body in self.requests if method == "PUT"]

    def wait_for_webhooks(self, webhooks: dict, timeout: float = 30) -> None:
        """Wait until a PUT has set the voice webhooks to `webhooks`."""

        def put_seen():
            return any(body["capabilities"]["voice"]["webhooks"] == webhooks for body in self.puts())

        with self.changed:
            assert self.changed.wait_for(put_seen, timeout), f"no PUT set {webhooks}; requests: {self.requests}"


class LocalServer:
    """A ThreadingHTTPServer on a free loopback port, served from a daemon thread until close()."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None = None):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if context:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        # A short poll, so close() returns at once instead of after serve_forever's default half second.
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NgrokStandIn(LocalServer):
    """ngrok's local API: GET /api/tunnels answers with `tunnels` as they are at that moment."""

    def __init__(self):
        self.tunnels: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                status, document = (200, {"tunnels": stand_in.tunnels}) if self.path == "/api/tunnels" else (404, {})
                body = json.dumps({**document, "uri": "/api/tunnels"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}"

    def serve(self, *tunnels: dict) -> None:
        self.tunnels = list(tunnels)


def tunnel(public_url: str, addr: str, proto: str = "https") -> dict:
    return {
        "name": "command_line",
        "uri": "/api/tunnels/command_line",
        "public_url": public_url,
        "proto": proto,
        "config": {"addr": addr, "inspect": True},
    }


def vonage_https_stand_in(stand_in: ApplicationStandIn, context: ssl.SSLContext) -> LocalServer:
    """ApplicationStandIn over HTTPS, for a server in another process (where `responses` cannot reach)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str):
            if self.path != f"/v2/applications/{stand_in.document['id']}":
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            reply = json.dumps(stand_in.handle(method, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self):
            self._answer("GET")

        def do_PUT(self):
            self._answer("PUT")

        def log_message(self, *args):
            pass

    return LocalServer(Handler, context)


def closed_port_url() -> str:
    """An address where nothing listens, as when no ngrok agent runs."""
    return f"http://127.0.0.1:{free_port()}"
