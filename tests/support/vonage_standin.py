"""A stand-in of Vonage's Applications API (v2) and Numbers API, served over HTTPS on 127.0.0.1, for commands run
in another process: the SDK only ever calls https://HOST, so the commands are pointed at it with VONAGE_API_HOST
and VONAGE_REST_HOST, and trust its certificate through REQUESTS_CA_BUNDLE.

It speaks the shapes the SDK sends and reads:
    POST /v2/applications            create (JSON, Basic auth); answers 201 with the application, id a new UUID
    GET|PUT /v2/applications/{id}    read, replace (404 for an unknown id)
    GET /account/numbers             the account's numbers, filtered by pattern and search_pattern
    POST /number/update              form: country, msisdn, app_id; answers {"error-code": "200", ...}
    GET|POST /v1/users               list (page_size, cursor, name; HAL pages), create (409 for a name taken)
    GET|DELETE /v1/users/{id}        read, delete (404 for an unknown id)
    PUT /v1/applications/{id}/push_tokens/android|ios   store what it is given, checking nothing (as Vonage)
Each request must carry the account's key and secret, as Basic auth or as api_key and api_secret parameters, or,
for the /v1 APIs, an application JWT signed with the private key of `application_key`'s pair; any other answers
401, as Vonage does. Every request is recorded, and `fail` makes every later one (or those to one
path) fail: "500", "malformed" (a 2xx whose body is not JSON), "slow" (no answer until the stand-in is closed),
"429" (with Retry-After) or "404".
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import ssl
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

API_KEY = "abcd1234"
API_SECRET = "s3cret-api-0123"
FAILURES = ("500", "malformed", "slow", "429", "404")
RATE_LIMIT_RETRY_AFTER = "7"
WRITES = ("POST", "PUT", "DELETE")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made now: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vonage stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    certificate_file, key_file = folder / "standin-cert.pem", folder / "standin-key.pem"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certificate_file, key_file


@dataclass(frozen=True)
class Received:
    """One request as the stand-in read it: `body` is the JSON document, or the form's fields, or None."""

    method: str
    path: str
    query: dict[str, str]
    body: dict | None
    content_type: str | None
    authorization: str | None


class VonageStandIn:
    """The stand-in's state (applications by id, the account's numbers, what it received) and its HTTPS server."""

    def __init__(self, certificate: tuple[Path, Path], numbers: list[dict] | None = None, application_key=None):
        """`application_key`: the public key of the application's pair, which the /v1 APIs' JWTs must verify with."""
        self.application_key = application_key
        self.users: dict[str, dict] = {}
        self.push_tokens: dict[tuple[str, str], dict] = {}
        self.applications: dict[str, dict] = {}
        self.numbers = copy.deepcopy(numbers or [])
        self.received: list[Received] = []
        self.failure: str | None = None
        self.failing_path: str | None = None
        self.closing = threading.Event()
        self.lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()  # a "slow" request still held is let go
        self.server.shutdown()
        self.server.server_close()

    def fail(self, failure: str | None, path: str | None = None) -> None:
        """Fail every later request (to `path` only, when given) in this way; None: answer again."""
        assert failure is None or failure in FAILURES, failure
        self.failure, self.failing_path = failure, path

    def writes(self) -> list[Received]:
        with self.lock:
            return [request for request in self.received if request.method in WRITES]

    def requests_to(self, method: str, path: str) -> list[Received]:
        with self.lock:
            return [request for request in self.received if (request.method, request.path) == (method, path)]

    # --- the APIs: (status, JSON document) for a request that passed the credentials check ---

    def answer(self, request: Received) -> tuple[int, object]:
        parts = request.path.strip("/").split("/")
        if request.path == "/v2/applications" and request.method == "POST":
            return self._create(request.body or {})
        if parts[:2] == ["v2", "applications"] and len(parts) == 3 and request.method in ("GET", "PUT"):
            return self._application(parts[2], request)
        if request.path == "/account/numbers" and request.method == "GET":
            return 200, self._owned_numbers(request.query)
        if request.path == "/number/update" and request.method == "POST":
            return self._update_number(request.body or {})
        if request.path == "/v1/users":
            return self._list_users(request.query) if request.method == "GET" else self._create_user(request.body or {})
        if parts[:2] == ["v1", "users"] and len(parts) == 3 and request.method in ("GET", "DELETE"):
            return self._user(parts[2], request.method)
        if parts[:2] == ["v1", "applications"] and parts[3:4] == ["push_tokens"] and request.method == "PUT":
            with self.lock:
                self.push_tokens[(parts[2], parts[4])] = copy.deepcopy(request.body or {})
            return 200, {}
        return 404, {"type": "about:blank", "title": "Not Found", "detail": f"no route {request.path}"}

    def _create(self, body: dict) -> tuple[int, object]:
        if not body.get("name"):
            return 400, _invalid("name", "is required")
        application_id = str(uuid.uuid4())
        document = {
            "id": application_id,
            **copy.deepcopy(body),
            "_links": {"self": {"href": f"/v2/applications/{application_id}"}},
        }
        with self.lock:
            self.applications[application_id] = document
        return 201, document

    def _application(self, application_id: str, request: Received) -> tuple[int, object]:
        with self.lock:
            if application_id not in self.applications:
                return 404, {"type": "about:blank", "title": "Not Found", "detail": f"no application {application_id}"}
            if request.method == "PUT":
                self.applications[application_id] = {
                    "id": application_id,
                    **copy.deepcopy(request.body or {}),
                    "_links": {"self": {"href": f"/v2/applications/{application_id}"}},
                }
            return 200, copy.deepcopy(self.applications[application_id])

    def _owned_numbers(self, query: dict[str, str]) -> dict:
        pattern, search = query.get("pattern"), query.get("search_pattern")
        with self.lock:
            numbers = copy.deepcopy(self.numbers)
        if pattern is not None:
            matches = {"0": str.startswith, "1": str.__contains__, "2": str.endswith}[search or "0"]
            numbers = [number for number in numbers if matches(number["msisdn"], pattern)]
        # As Vonage answers: no `numbers` at all when there are none.
        return {"count": len(numbers), "numbers": numbers} if numbers else {"count": 0}

    def add_user(self, name: str, display_name: str | None = None) -> dict:
        user = {"id": f"USR-{uuid.uuid4()}", "name": name, "display_name": display_name}
        with self.lock:
            self.users[user["id"]] = user
        return user

    def user_names(self) -> list[str]:
        with self.lock:
            return sorted(user["name"] for user in self.users.values())

    def _list_users(self, query: dict[str, str]) -> tuple[int, object]:
        with self.lock:
            users = sorted(self.users.values(), key=lambda user: user["id"])
        if query.get("name"):
            users = [user for user in users if user["name"] == query["name"]]
        size, start = int(query.get("page_size") or 100), int(query.get("cursor") or 0)
        page = users[start : start + size]
        links = {
            "self": {"href": "https://api.nexmo.com/v1/users"},
            "first": {"href": "https://api.nexmo.com/v1/users"},
        }
        if start + size < len(users):
            links["next"] = {"href": f"https://api.nexmo.com/v1/users?page_size={size}&cursor={start + size}"}
        document = {"page_size": size, "_embedded": {"users": [_user_document(user) for user in page]}, "_links": links}
        return 200, document

    def _create_user(self, body: dict) -> tuple[int, object]:
        name = body.get("name")
        if name in self.user_names():
            return 409, {"title": "Conflict", "code": "user:error:duplicate-name", "detail": f"User {name} exists"}
        return 201, _user_document(self.add_user(name or f"NAM-{uuid.uuid4()}", body.get("display_name")))

    def _user(self, user_id: str, method: str) -> tuple[int, object]:
        with self.lock:
            if user_id not in self.users:
                return 404, {"title": "Not found.", "code": "user:error:not-found", "detail": "User does not exist"}
            if method == "DELETE":
                del self.users[user_id]
                return 204, None
            return 200, _user_document(self.users[user_id])

    def _update_number(self, form: dict) -> tuple[int, object]:
        with self.lock:
            for number in self.numbers:
                if number["msisdn"] == form.get("msisdn") and number["country"] == form.get("country"):
                    number["app_id"] = form.get("app_id")
                    return 200, {"error-code": "200", "error-code-label": "success"}
        return 200, {"error-code": "420", "error-code-label": "Numbers from this country can be requested only"}


def _user_document(user: dict) -> dict:
    return {**user, "_links": {"self": {"href": f"https://api.nexmo.com/v1/users/{user['id']}"}}}


def _fields(encoded: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(encoded, keep_blank_values=True, strict_parsing=False).items()}


def _invalid(name: str, reason: str) -> dict:
    return {"title": "Bad Request", "invalid_parameters": [{"name": name, "reason": reason}]}


def _authorized(request: Received, application_key=None) -> bool:
    if request.path.startswith("/v1/"):
        return _application_jwt(request.authorization, application_key)
    expected = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    if request.authorization is not None:
        return request.authorization == expected
    fields = {**request.query, **(request.body or {})}
    return (fields.get("api_key"), fields.get("api_secret")) == (API_KEY, API_SECRET)


def _application_jwt(authorization: str | None, application_key) -> bool:
    """Whether the request carries an application JWT (RS256) that the application's public key verifies."""
    import jwt

    if application_key is None or not authorization or not authorization.startswith("Bearer "):
        return False
    try:
        claims = jwt.decode(authorization.removeprefix("Bearer "), application_key, algorithms=["RS256"])
    except jwt.InvalidTokenError:
        return False
    return bool(claims.get("application_id"))


def _handler(stand_in: VonageStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            try:
                request = self._read()
            except ValueError as error:
                self._send(400, json.dumps({"title": "Bad Request", "detail": f"unreadable body: {error}"}).encode())
                return
            with stand_in.lock:
                stand_in.received.append(request)
            failure = stand_in.failure if stand_in.failing_path in (None, request.path) else None
            if not _authorized(request, stand_in.application_key):
                self._send(401, json.dumps({"type": "about:blank", "title": "Unauthorized"}).encode())
            elif failure == "429":
                self._send(429, b'{"title": "Too Many Requests"}', ("Retry-After", RATE_LIMIT_RETRY_AFTER))
            elif failure == "404":
                self._send(404, b'{"title": "Not Found"}')
            elif failure == "500":
                self._send(500, json.dumps({"title": "Internal Server Error"}).encode())
            elif failure == "malformed":
                self._send(201 if request.method == "POST" else 200, b'{"id": "cut off')
            elif failure == "slow":
                stand_in.closing.wait(120)
            else:
                status, document = stand_in.answer(request)
                self._send(status, b"" if document is None else json.dumps(document).encode())

        def _read(self) -> Received:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            content_type = self.headers.get("Content-Type")
            # Read as its Content-Type says, as a real API does: a form labelled JSON is a 400.
            body = None
            if raw and content_type == "application/json":
                body = json.loads(raw)
            elif raw and content_type == "application/x-www-form-urlencoded":
                body = _fields(raw.decode())
            elif raw:
                raise ValueError(f"Content-Type {content_type!r}")
            return Received(
                self.command, parts.path, _fields(parts.query), body, content_type, self.headers.get("Authorization")
            )

        def _send(self, status: int, body: bytes, *headers: tuple[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args):
            pass

    return Handler
