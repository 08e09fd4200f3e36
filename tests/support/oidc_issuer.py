"""A real OpenID issuer for the tests, over HTTP on 127.0.0.1: a discovery document, a JWKS, and ID tokens it signs
with RS256 and ES256 keys of its own. It can rotate its keys, go down, answer slowly, or answer wrongly, and it
counts what it was asked, so a test can see how often the server under test fetched the keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks.json"
AUDIENCE = "voice-app-test"
# How the issuer may answer instead of well: "slow" holds each request until the issuer is closed; "500" and
# "not-json" answer every request so; "wrong-issuer" is a discovery document for another issuer; "no-keys" a JWKS
# with none.
FAILURES = ("slow", "500", "not-json", "wrong-issuer", "no-keys")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcIssuer:
    """The issuer's keys (kid -> (algorithm, private key)), its HTTP server, and what it was asked."""

    def __init__(self, certificate: tuple | None = None):
        """Over HTTP, or HTTPS with `certificate` (its certificate and key files, as vonage_standin makes them)."""
        self.keys: dict[str, tuple[str, object]] = {}
        self.asked: Counter[str] = Counter()
        self.failure: str | None = None
        self.jwks_redirect: str | None = None  # set: the JWKS answers 302 to this address
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.rotate()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def rotate(self) -> tuple[str, str]:
        """Replace every key with a new RS256 and a new ES256 one; their key ids."""
        rsa_id, ec_id = f"rsa-{uuid.uuid4().hex[:8]}", f"ec-{uuid.uuid4().hex[:8]}"
        with self.lock:
            self.keys = {
                rsa_id: ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                ec_id: ("ES256", ec.generate_private_key(ec.SECP256R1())),
            }
        return rsa_id, ec_id

    def key_id(self, algorithm: str = "RS256") -> str:
        with self.lock:
            return next(kid for kid, (alg, _) in self.keys.items() if alg == algorithm)

    def public_pem(self, key_id: str) -> bytes:
        return (
            self.keys[key_id][1]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def claims(self, user: str = "Alice", **changes) -> dict:
        """An ID token's claims for `user`, valid now for an hour; `changes` replace claims (None removes one)."""
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": user,
            "iat": now,
            "exp": now + 3600,
            "email": "a@example.com",
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def id_token(self, user: str = "Alice", algorithm: str = "RS256", key_id: str | None = None, **changes) -> str:
        """An ID token signed with the issuer's key of `algorithm` (or the key `key_id`, which may be made up)."""
        kid = key_id or self.key_id(algorithm)
        signing_key = self.keys[kid][1] if kid in self.keys else self.keys[self.key_id(algorithm)][1]
        return jwt.encode(self.claims(user, **changes), signing_key, algorithm=algorithm, headers={"kid": kid})

    def unsigned_token(self, user: str = "Alice") -> str:
        """The same claims with `alg: none` and no signature."""
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": self.key_id()}).encode())
        return f"{header}.{_b64(json.dumps(self.claims(user)).encode())}."

    def hs256_with_public_key(self, user: str = "Alice") -> str:
        """The classic confusion attack: HS256, its secret the issuer's public RSA key, which anyone can fetch."""
        kid = self.key_id()
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        payload = _b64(json.dumps(self.claims(user)).encode())
        signature = hmac.new(self.public_pem(kid), f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def jwks(self) -> dict:
        documents = []
        with self.lock:
            for kid, (algorithm, key) in self.keys.items():
                kind = RSAAlgorithm if algorithm.startswith("RS") else ECAlgorithm
                document = json.loads(kind.to_jwk(key.public_key()))
                documents.append({**document, "kid": kid, "alg": algorithm, "use": "sig"})
        return {"keys": documents}

    def fail(self, failure: str | None) -> None:
        assert failure is None or failure in FAILURES, failure
        self.failure = failure

    def go_down(self) -> None:
        """Stop listening: from now on, a connection to the issuer is refused."""
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    close = go_down


def _handler(issuer: OidcIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            with issuer.lock:
                issuer.asked[self.path] += 1
            failure = issuer.failure
            if failure == "slow":
                issuer.closing.wait(60)
                return
            if failure == "500":
                return self._send(500, b'{"error": "server_error"}')
            if failure == "not-json":
                return self._send(200, b"<html>Sign in</html>", "text/html")
            if self.path == DISCOVERY_PATH:
                named = "https://someone-else.example" if failure == "wrong-issuer" else issuer.url
                document = {
                    "issuer": named,
                    "jwks_uri": issuer.url + JWKS_PATH,
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }
                return self._send(200, json.dumps(document).encode())
            if self.path == JWKS_PATH and issuer.jwks_redirect:
                self.send_response(302)
                self.send_header("Location", issuer.jwks_redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path in (JWKS_PATH, JWKS_PATH + "?moved"):
                document = {"keys": []} if failure == "no-keys" else issuer.jwks()
                return self._send(200, json.dumps(document).encode())
            return self._send(404, b'{"error": "not_found"}')

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler
