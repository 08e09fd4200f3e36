"""Settings: read once at start-up from the environment and an optional .env, validated into one object."""

from __future__ import annotations

import base64
import binascii
import math
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import phonenumbers
from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from events import LEG_STATUSES, OTHER_EVENT_KINDS
from ncco import ANY_USER, MACHINE_DETECTION_ACTIONS, TTS_LANGUAGES, CallPlan, CallRouting
from policy import (
    DEFAULT_BLOCKED_TYPES,
    NUMBER_TYPE_NAMES,
    DestinationPolicy,
    NumberError,
    looks_like_phone_number,
    normalize_number,
)

LOG_FORMATS = ("pretty", "json", "line")
MACHINE_DETECTION_MODES = ("off", *MACHINE_DETECTION_ACTIONS)
MAX_USER_NAME_LENGTH = 100  # the call log's caller column
DATABASE_EXAMPLE = "DATABASE_URL=sqlite:///instance/calls.db or postgresql+psycopg://user:password@localhost/calls"
# Flask's default instance folder for app.py: the generated call-log token and the webhooks record live there.
DEFAULT_INSTANCE_PATH = str(Path(__file__).resolve().parent / "instance")
DEFAULT_DATABASE_URL = f"sqlite:///{Path(DEFAULT_INSTANCE_PATH) / 'calls.db'}"
DATABASE_FILE = "calls.db"  # the default database, in the instance folder
RECORDINGS_FOLDER = "recordings"  # the default store of recordings, in the instance folder
RECORD_FORMATS = ("mp3", "wav")
# The optional settings file, in the folder the server or a `flask` command runs from (`flask setup` writes it).
ENV_FILE = ".env"
# How long a command waits for each answer from Vonage's APIs unless VONAGE_TIMEOUT says otherwise.
DEFAULT_VONAGE_TIMEOUT = 15
# How long the forwarder waits for the user's app to answer one delivery unless FORWARD_TIMEOUT says otherwise.
DEFAULT_FORWARD_TIMEOUT = 15
_TYPE_VALUES = {name: value for value, name in NUMBER_TYPE_NAMES.items()}
_LANGUAGES = {code.lower(): code for code in TTS_LANGUAGES}
# Where prometheus_client keeps each process's metrics (its multi-process mode): set by serve.py for its workers
# and writer, read by prometheus_client itself, so it is no setting of ours.
METRICS_FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Settings that are secrets: never shown, in a repr, a log line or `flask settings`.
SECRET_FIELDS = (
    "signature_secrets",
    "call_log_token",
    "private_key",
    "api_secret",
    "client_auth_key",
    "forward_secrets",
)


class ConfigError(Exception):
    """A setting that stops start-up; the message is one line naming the variable and a valid example."""


@dataclass(frozen=True)
class Settings:
    """Every setting the server reads, typed and validated."""

    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = os.cpu_count() or 1
    vonage_number: str | None = None
    default_region: str | None = None
    allowed_countries: frozenset[str] = frozenset()
    blocked_number_types: frozenset[int] = DEFAULT_BLOCKED_TYPES
    greeting: str = "Please wait while we connect you."
    tts_language: str = "en-US"
    tts_style: int | None = None
    ringing_timeout: int = 60
    call_limit: int = 7200
    machine_detection: str = "off"
    inbound_routes: tuple[tuple[str, str], ...] = ()
    inbound_default_user: str | None = None
    callable_users: frozenset[str] = frozenset()
    log_format: str = "pretty"
    no_color: bool = False
    signature_secrets: tuple[str, ...] = field(default=(), repr=False)
    signature_max_age: int = 300
    database_url: str = DEFAULT_DATABASE_URL
    call_log_token: str | None = field(default=None, repr=False)
    instance_path: str = DEFAULT_INSTANCE_PATH
    application_id: str | None = None
    private_key: str | None = field(default=None, repr=False)
    public_url: str | None = None
    api_host: str | None = None
    rest_host: str | None = None
    vonage_timeout: int = DEFAULT_VONAGE_TIMEOUT
    api_key: str | None = None
    api_secret: str | None = field(default=None, repr=False)
    ngrok_api_url: str = "http://127.0.0.1:4040/api/tunnels"
    auto_webhooks: str | None = None
    # Where the call-log writer listens: set by serve.py for its workers (hand_over), never by a variable.
    writer_socket: str | None = None
    call_log_retention: timedelta | None = None
    client_auth: str | None = None
    client_auth_issuer: str | None = None
    client_auth_audience: str | None = None
    client_auth_jwks_url: str | None = None
    client_auth_user_claim: str = "sub"
    client_auth_key: str | None = field(default=None, repr=False)
    client_token_ttl: timedelta = timedelta(hours=1)
    client_create_users: bool = False
    # Hosts trusted with the application's JWT beside Vonage's own (policy.vonage_url_refusal): for a stand-in.
    trusted_hosts: tuple[str, ...] = ()
    # Forwarding every stored event to the user's own app (docs/forwarding.md): where, signed with what, which.
    forward_urls: tuple[str, ...] = ()
    forward_secrets: tuple[str, ...] = field(default=(), repr=False)
    forward_events: frozenset[str] | None = None  # None: every event and answer decision
    forward_timeout: int = DEFAULT_FORWARD_TIMEOUT
    record_calls: bool = False
    record_format: str = "mp3"
    record_announcement: str | None = None
    # A folder or s3://BUCKET/PREFIX; None: the recordings folder in the instance folder (recordings_location).
    recordings_url: str | None = None
    recordings_s3_endpoint: str | None = None
    recording_alert_after: timedelta = timedelta(hours=1)
    recording_retention: timedelta | None = None

    @property
    def recordings_location(self) -> str:
        """Where recordings are kept: RECORDINGS_URL, else the recordings folder in the instance folder."""
        return self.recordings_url or str(Path(self.instance_path) / RECORDINGS_FOLDER)

    # CALL_CONTROL=on: /api/calls/<leg>/actions, the page's buttons and `flask hangup` act on calls in progress.
    call_control: bool = False

    def described(self) -> dict[str, str]:
        """Every setting as text for people: secrets say only whether they are set."""
        shown = {}
        for setting in fields(self):
            if setting.name == "writer_socket":
                continue
            value = getattr(self, setting.name)
            if setting.name == "signature_secrets":
                value = f"({len(value)} set)" if value else "(not set: signatures are not checked)"
            elif setting.name == "forward_secrets":
                value = f"({len(value)} set)" if value else "(not set)"
            elif setting.name in SECRET_FIELDS:
                value = "(set)" if value else "(not set)"
            elif setting.name == "blocked_number_types":
                value = ",".join(sorted(NUMBER_TYPE_NAMES[item] for item in value)) or "(none)"
            elif setting.name == "allowed_countries":
                value = ",".join(sorted(value)) or "(all)"
            elif setting.name == "inbound_routes":
                value = ",".join(f"{number}={user}" for number, user in value) or "(none)"
            elif setting.name == "callable_users":
                value = ",".join(sorted(value)) or "(none)"
            elif setting.name == "call_log_retention":
                value = f"{describe_age(value)} (pruned by the writer)" if value else "(not set: kept forever)"
            elif setting.name == "client_auth":
                value = value or "(not set: POST /client/token answers 404)"
            elif setting.name == "client_token_ttl":
                value = describe_duration(value)
            elif setting.name == "trusted_hosts":
                value = ",".join(value) or "(none beside Vonage's own API hosts)"
            elif setting.name == "forward_urls":
                value = ",".join(value) or "(not set: nothing is forwarded)"
            elif setting.name == "forward_events":
                value = ",".join(sorted(value)) if value is not None else "(all)"
            elif setting.name == "recordings_url":
                value = value or f"{self.recordings_location} (the default)"
            elif setting.name in ("recording_alert_after",):
                value = describe_duration(value)
            elif setting.name == "recording_retention":
                value = describe_age(value) if value else "(not set: kept as long as their call)"
            elif setting.name == "call_control":
                value = "on" if value else "off (POST /api/calls/<leg>/actions answers 404)"
            elif setting.name == "no_color":
                value = "set: the line format is never coloured" if value else "(not set)"
            elif isinstance(value, bool):
                value = "on" if value else "off"
            shown[setting.name] = str(value)
        return shown

    @property
    def destination_policy(self) -> DestinationPolicy:
        return DestinationPolicy(
            allowed_countries=self.allowed_countries,
            blocked_types=self.blocked_number_types,
            own_number=self.vonage_number,
            default_region=self.default_region,
            application_numbers=self.call_routing.application_numbers,
        )

    @property
    def call_plan(self) -> CallPlan:
        return CallPlan(
            greeting=self.greeting,
            language=self.tts_language,
            from_number=self.vonage_number,
            ringing_timeout=self.ringing_timeout,
            call_limit=self.call_limit,
            style=self.tts_style,
            machine_detection=self.machine_detection,
            record_calls=self.record_calls,
            record_format=self.record_format,
            record_announcement=self.record_announcement,
        )

    @property
    def call_routing(self) -> CallRouting:
        return CallRouting(
            inbound_routes=self.inbound_routes,
            inbound_default_user=self.inbound_default_user,
            callable_users=self.callable_users,
        )


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}-{high}")
        return value

    return parse


def _text(max_length: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if not value:
            raise ValueError("it is empty")
        if len(value) > max_length:
            raise ValueError(f"it is {len(value)} characters long, over the limit of {max_length}")
        return value

    return parse


def _region(raw: str) -> str:
    value = raw.strip().upper()
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{raw!r} is not an ISO 3166 region code")
    return value


def _regions(raw: str) -> frozenset[str]:
    return frozenset(_region(part) for part in raw.split(",") if part.strip())


def _number_types(raw: str) -> frozenset[int]:
    values = set()
    for part in raw.split(","):
        name = part.strip().upper().replace("-", "_").replace(" ", "_")
        if not name:
            continue
        if name not in _TYPE_VALUES:
            raise ValueError(f"{part.strip()!r} is not a libphonenumber number type")
        values.add(_TYPE_VALUES[name])
    return frozenset(values)


def _vonage_number(raw: str) -> str:
    try:
        return normalize_number(raw)
    except NumberError as error:
        raise ValueError(error.detail) from None


MIN_SIGNATURE_SECRET_LENGTH = 16
_ORDINALS = ("first", "second", "third")


def _secrets(raw: str) -> tuple[str, ...]:
    """VONAGE_SIGNATURE_SECRET: one secret, or several while rotating, each at least 16 characters.

    The secret is the HS256 key of every webhook's signature, and the signed JWTs are in every request: with a
    short key, anyone who has one (a proxy's log, say) can try keys offline until the signature matches, then
    sign webhooks of their own. Vonage's dashboard lets an account set its own secret, and may accept a short one.
    """
    secrets = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not secrets:
        raise ValueError("it holds no secret")
    for index, secret in enumerate(secrets):
        if len(secret) < MIN_SIGNATURE_SECRET_LENGTH:
            if len(secrets) == 1:
                which = "it is"
            else:
                which = f"the {_ORDINALS[index]} secret is" if index < len(_ORDINALS) else f"secret {index + 1} is"
            raise ValueError(
                f"{which} {len(secret)} characters long, and an HMAC key that short is guessable: the dashboard "
                "may accept one that short, this server does not (make a longer one in the dashboard's API "
                f"settings: signature secret, {MIN_SIGNATURE_SECRET_LENGTH} or more random characters)"
            )
    return secrets


def _database_url(raw: str) -> str:
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ValueError(f"{raw.strip()!r} is not a database URL") from None
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        # The bare scheme would ask SQLAlchemy for psycopg2; this server ships psycopg 3.
        url = url.set(drivername="postgresql+psycopg")
        if not url.database:
            raise ValueError(f"{raw.strip()!r} names no database (the part after the last /)")
    elif backend == "sqlite":
        if url.host or url.port or url.username:
            raise ValueError(f"{raw.strip()!r} has a host; an SQLite URL has three slashes before its path")
    else:
        raise ValueError(f"{backend} is not supported (SQLite or PostgreSQL)")
    return url.render_as_string(hide_password=False)


def valid_token(raw: str) -> str:
    """A call-log token, stripped; ValueError when too short or holding spaces."""
    value = raw.strip()
    if len(value) < 16 or any(character.isspace() for character in value):
        raise ValueError("it must be at least 16 characters with no spaces")
    return value


def _folder(raw: str) -> str:
    # Flask wants an absolute instance path.
    return str(Path(raw.strip()).expanduser().resolve())


def _application_id(raw: str) -> str:
    value = raw.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value):
        raise ValueError(f"{raw.strip()!r} is not an application id (a UUID)")
    return value


# --- VONAGE_PRIVATE_KEY: checked at start-up without cryptography ---

PRIVATE_KEY_EXAMPLE = (
    "VONAGE_PRIVATE_KEY=./private.key (downloaded from your application's page in the Vonage dashboard)"
)
# RS256 with a shorter modulus is forbidden by RFC 7518 (section 3.3); PyJWT warns about one.
MIN_RSA_BITS = 2048
# The one algorithm Vonage's application JWTs (RS256) can be signed with, and the others a key file may hold.
RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1
OTHER_KEY_ALGORITHMS = {
    bytes.fromhex("2a8648ce3d0201"): "an EC key",  # 1.2.840.10045.2.1
    bytes.fromhex("2a8648ce380401"): "a DSA key",  # 1.2.840.10040.4.1
    bytes.fromhex("2b6570"): "an Ed25519 key",  # 1.3.101.112
    bytes.fromhex("2b6571"): "an Ed448 key",
    bytes.fromhex("2b656e"): "an X25519 key",
    bytes.fromhex("2b656f"): "an X448 key",
    bytes.fromhex("2a864886f70d01010a"): "an RSA-PSS key (RS256 signs with PKCS#1 v1.5, which such a key refuses)",
}
_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_TAG_INTEGER, _TAG_OCTET_STRING, _TAG_NULL, _TAG_OID, _TAG_SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
# What may follow a PKCS#8 key's octet string: [0] attributes, [1] the public key (RFC 5958).
_PKCS8_TRAILERS = (0xA0, 0x81, 0xA1)


def private_key_refusal(problem: str) -> str:
    """The one line a bad VONAGE_PRIVATE_KEY stops start-up (and the commands) with, in ConfigError's format."""
    return f"VONAGE_PRIVATE_KEY: {problem}; for example {PRIVATE_KEY_EXAMPLE}"


def private_key_source(setting: str) -> str:
    """How a message names where the key came from: the path as given, or the setting's own PEM text."""
    return "the PEM text in the setting" if "-----BEGIN" in setting else setting


def private_key_text(setting: str) -> str:
    """The PEM of the RSA private key that VONAGE_PRIVATE_KEY names (a path) or holds (the PEM text itself, with
    real or backslash-n newlines), rebuilt from its DER; ValueError says, in words for the one line, what is wrong.

    The server's processes never import cryptography (nor PyJWT), and every one of them loads the settings, so
    this is the standard library's check, and it is structural and arithmetic: a PEM block labelled as a private
    key, PKCS#1 (RSA PRIVATE KEY) or PKCS#8 (PRIVATE KEY) and not encrypted; base64 that decodes; DER whose
    lengths account for every byte; the rsaEncryption algorithm (Vonage signs application JWTs with RS256, so no
    EC, Ed25519 or DSA key will do); and nine integers that are one RSA key (n = p*q, e*d = 1 modulo lcm(p-1, q-1),
    the CRT values consistent) of at least 2048 bits. That catches a file cut short, edited, mangled in a copy and
    paste, the public half, a passphrase-protected key, another algorithm's key, or not a key at all, and names
    which, before anything is served. Primality is not tested: a key that passes all this and still does not load
    is refused by the commands that sign with it (flask token, flask call), which load it in full with
    cryptography first (vonage_helper.clients.private_key_pem).
    """
    where = private_key_source(setting)
    text = setting.replace("\\n", "\n") if "-----BEGIN" in setting else _key_file_text(setting)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ValueError(f"{where} is empty")
    label, start = _private_key_block(text, where)
    end = text.find(f"-----END {label}-----", start)
    if end < 0:
        raise ValueError(f"{where} is cut short: it has no -----END {label}----- line")
    lines = [line.strip() for line in text[start:end].split("\n")]
    headers = [line.lower() for line in lines if ":" in line]
    if any(header.startswith("proc-type:") and "encrypted" in header for header in headers):
        raise ValueError(_encrypted(where))
    try:
        der = base64.b64decode("".join(line for line in lines if ":" not in line), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is damaged: its base64 does not decode (cut short or edited?)") from None
    if not der:
        raise ValueError(f"{where} is damaged: the block between its BEGIN and END lines is empty")
    try:
        rsa_der = _pkcs8_rsa_key(der) if label == "PRIVATE KEY" else der
        _check_rsa_key(rsa_der)
    except _NotAnRsaKey as other:
        raise ValueError(f"{where} holds {other}, not an RSA key: Vonage signs application JWTs with RS256") from None
    except _Damaged as damage:
        raise ValueError(f"{where} is damaged: {damage} (cut short, edited, or not the file Vonage gave)") from None
    except _TooShort as short:
        raise ValueError(f"{where} holds a {short}-bit RSA key, and RS256 needs {MIN_RSA_BITS} bits or more") from None
    encoded = base64.b64encode(der).decode()
    body = "\n".join(encoded[offset : offset + 64] for offset in range(0, len(encoded), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def _key_file_text(setting: str) -> str:
    path = Path(setting).expanduser()
    try:
        content = path.read_bytes()
    except OSError as error:
        if len(setting) > 255 or "\n" in setting:
            # Most likely a key pasted without its BEGIN line: never repeated in a message.
            raise ValueError("it holds neither PEM text (no -----BEGIN line) nor the path of a file") from None
        if isinstance(error, FileNotFoundError):
            folder = "" if path.is_absolute() else f" (looked for in {Path.cwd()})"
            raise ValueError(f"file not found at {setting}{folder}") from None
        if isinstance(error, IsADirectoryError):
            raise ValueError(f"{setting} is a folder, not the key file") from None
        raise ValueError(f"cannot read {setting} ({error.strerror or error})") from None
    try:
        return content.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{setting} is not PEM text: it holds binary data (a DER key?)") from None


def _private_key_block(text: str, where: str) -> tuple[str, int]:
    """The label of the PEM block that holds the private key, and where its base64 starts; ValueError otherwise."""
    blocks = [(match.group(1), match.end()) for match in _PEM_BEGIN.finditer(text)]
    if not blocks:
        raise ValueError(f"{where} holds no PEM private key (no -----BEGIN line)")
    keys = [(label, start) for label, start in blocks if label.endswith("PRIVATE KEY")]
    if not keys:
        label = blocks[0][0]
        if "PUBLIC KEY" in label:
            what = "a public key"
        elif "CERTIFICATE" in label:
            what = "a certificate request" if "REQUEST" in label else "a certificate"
        else:
            what = f"a {label} block"
        raise ValueError(f"{where} holds {what} (-----BEGIN {label}-----), not the private key")
    label, start = keys[0]
    if label == "ENCRYPTED PRIVATE KEY":
        raise ValueError(_encrypted(where))
    if label == "OPENSSH PRIVATE KEY":
        raise ValueError(f"{where} holds an OpenSSH private key, not PEM (ssh-keygen -p -m PEM -f FILE rewrites it)")
    if label in ("EC PRIVATE KEY", "DSA PRIVATE KEY"):
        kind = "an EC key" if label.startswith("EC") else "a DSA key"
        raise ValueError(f"{where} holds {kind}, not an RSA key: Vonage signs application JWTs with RS256")
    if label not in ("PRIVATE KEY", "RSA PRIVATE KEY"):
        raise ValueError(f"{where} holds a {label} block, not an RSA private key")
    return label, start


def _encrypted(where: str) -> str:
    return (
        f"{where} is encrypted with a passphrase, which the server has no setting for "
        "(openssl pkey -in encrypted.key -out private.key writes it without one)"
    )


class _Damaged(Exception):
    """The DER does not hold what its label says."""


class _NotAnRsaKey(Exception):
    """A well-formed PKCS#8 key of another algorithm; the message names it."""


class _TooShort(Exception):
    """An RSA key whose modulus is under MIN_RSA_BITS; the message is its size."""


def _der_elements(data: bytes) -> list[tuple[int, bytes]]:
    """The DER elements (tag, content) that exactly fill `data`: definite, minimally encoded lengths, no bytes over."""
    elements, offset = [], 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise _Damaged("its DER ends inside an element")
        tag, length = data[offset], data[offset + 1]
        offset += 2
        if tag & 0x1F == 0x1F:
            raise _Damaged("its DER has a tag no key uses")
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 4 or offset + count > len(data) or data[offset] == 0:
                raise _Damaged("its DER has a length that is not a DER length")
            length = int.from_bytes(data[offset : offset + count], "big")
            if length < 0x80:
                raise _Damaged("its DER has a length that is not a DER length")
            offset += count
        if offset + length > len(data):
            raise _Damaged("its DER says an element is longer than what is left of the key")
        elements.append((tag, data[offset : offset + length]))
        offset += length
    return elements


def _der_sequence(data: bytes) -> list[tuple[int, bytes]]:
    """The elements of the one SEQUENCE that `data` is."""
    elements = _der_elements(data)
    if len(elements) != 1 or elements[0][0] != _TAG_SEQUENCE:
        raise _Damaged("its DER is not one SEQUENCE")
    return _der_elements(elements[0][1])


def _der_integer(element: tuple[int, bytes]) -> int:
    tag, content = element
    if tag != _TAG_INTEGER or not content:
        raise _Damaged("its DER holds something else where an INTEGER belongs")
    if len(content) > 1 and (content[0], content[1] >> 7) in ((0x00, 0), (0xFF, 1)):
        raise _Damaged("its DER has an INTEGER that is not minimally encoded")
    return int.from_bytes(content, "big", signed=True)


def _pkcs8_rsa_key(der: bytes) -> bytes:
    """The PKCS#1 RSAPrivateKey inside a PKCS#8 PrivateKeyInfo (RFC 5208, 5958)."""
    fields = _der_sequence(der)
    if len(fields) < 3 or fields[1][0] != _TAG_SEQUENCE or fields[2][0] != _TAG_OCTET_STRING:
        raise _Damaged("its DER is not a PKCS#8 private key")
    if _der_integer(fields[0]) not in (0, 1) or any(tag not in _PKCS8_TRAILERS for tag, _ in fields[3:]):
        raise _Damaged("its DER is not a PKCS#8 private key")
    algorithm = _der_elements(fields[1][1])
    if not algorithm or algorithm[0][0] != _TAG_OID:
        raise _Damaged("its DER names no algorithm")
    oid = algorithm[0][1]
    if oid != RSA_ENCRYPTION_OID:
        raise _NotAnRsaKey(OTHER_KEY_ALGORITHMS.get(oid, f"a key of another algorithm (OID {_oid_text(oid)})"))
    if algorithm[1:] not in ([], [(_TAG_NULL, b"")]):
        raise _Damaged("its DER has RSA parameters that are not NULL")
    return fields[2][1]


def _check_rsa_key(der: bytes) -> None:
    """A PKCS#1 RSAPrivateKey (RFC 8017, A.1.2): two primes, numbers that make one key, a long enough modulus."""
    fields = _der_sequence(der)
    if not fields:
        raise _Damaged("its DER is not an RSA private key")
    version = _der_integer(fields[0])
    if version == 1:
        raise _Damaged("it is a multi-prime RSA key, which RS256 libraries do not load")
    if version != 0 or len(fields) != 9:
        raise _Damaged("its DER is not an RSA private key (nine integers)")
    n, e, d, p, q, dp, dq, qinv = (_der_integer(element) for element in fields[1:])
    consistent = (
        min(n, e, d, p, q, dp, dq, qinv) > 0
        and p * q == n
        and e % 2 == 1
        and e * d % math.lcm(p - 1, q - 1) == 1
        and e * dp % (p - 1) == 1
        and e * dq % (q - 1) == 1
        and q * qinv % p == 1
    )
    if not consistent:
        raise _Damaged("its numbers do not make an RSA key")
    if n.bit_length() < MIN_RSA_BITS:
        raise _TooShort(n.bit_length())


def _oid_text(oid: bytes) -> str:
    arcs, value = [], 0
    for byte in oid:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return "?"
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def base_url(raw: str, example: str = "https://abc123.ngrok.app") -> str:
    """A server's base URL (http or https, a host, no query), without a trailing slash; ValueError names `example`."""
    value = raw.strip().rstrip("/")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{raw.strip()!r} is not a base URL such as {example}")
    return value


def _api_host(raw: str) -> str:
    value = raw.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", value):
        raise ValueError(f"{raw.strip()!r} is not a host name")
    return value


def _ngrok_api_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{raw.strip()!r} is not the address of ngrok's local API")
    # A base URL (the agent's web interface address) or the tunnels list itself both work.
    return value if parts.path.endswith("/api/tunnels") else f"{value}/api/tunnels"


def _auto_webhooks(raw: str) -> str:
    value = raw.strip().lower()
    if value != "ngrok":
        raise ValueError(f"{raw.strip()!r} is not supported (only ngrok; leave it empty for off)")
    return value


def _language(raw: str) -> str:
    value = _LANGUAGES.get(raw.strip().lower())
    if value is None:
        raise ValueError(f"{raw!r} is not a language Vonage's text-to-speech speaks")
    return value


def _one_of(choices: tuple[str, ...], after: str = "") -> Callable[[str], str]:
    """A parser of one of `choices`, any case; its ValueError lists them (then `after`)."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"{raw.strip()!r} is not one of {', '.join(choices)}{after}")
        return value

    return parse


_machine_detection = _one_of(MACHINE_DETECTION_MODES)


def _user_name(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("the user name is empty")
    if len(value) > MAX_USER_NAME_LENGTH:
        raise ValueError(f"the user name is {len(value)} characters long, over the limit of {MAX_USER_NAME_LENGTH}")
    if any(character in ",=" for character in value) or value == ANY_USER:
        raise ValueError(f"{value!r} is not a user name (a name has no ',' or '=' and is not '*')")
    if looks_like_phone_number(value):
        # The server tells a user from a number by how `to` is written, so such a user could never be called.
        raise ValueError(f"{value!r} is written like a phone number, so it cannot be a user name")
    return value


def _inbound_routes(raw: str, default_region: str | None) -> tuple[tuple[str, str], ...]:
    routes: dict[str, str] = {}
    for pair in (part.strip() for part in raw.split(",")):
        if not pair:
            continue
        number_text, equals, user = pair.partition("=")
        if not equals:
            raise ValueError(f"{pair!r} is not a number=user pair")
        try:
            number = normalize_number(number_text, default_region)
        except NumberError as error:
            raise ValueError(error.detail) from None
        if not user.strip():
            raise ValueError(f"the user name for {number} is empty")
        name = _user_name(user)
        if routes.get(number, name) != name:
            raise ValueError(f"{number} is routed to both {routes[number]} and {name}")
        routes[number] = name
    if not routes:
        raise ValueError("it holds no number=user pair")
    return tuple(routes.items())


def valid_user_name(raw: str) -> str:
    """A Client SDK user's name as a login token may carry it: the routing settings' rules (1-100 characters, no
    ',' or '=', not '*', not written like a phone number), exactly as given and with no control characters;
    ValueError says what is wrong."""
    if raw != raw.strip():
        raise ValueError("the user name starts or ends with a space")
    if any(not character.isprintable() for character in raw):
        raise ValueError("the user name holds a control character")
    return _user_name(raw)


def _callable_users(raw: str) -> frozenset[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if names == [ANY_USER]:
        return frozenset({ANY_USER})
    if ANY_USER in names:
        raise ValueError("'*' means any user, so it comes alone")
    return frozenset(_user_name(name) for name in names)


AGE_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
LONGEST_AGE = timedelta(days=36500)


def parse_age(raw: str) -> timedelta:
    """An age such as 12h, 90d or 2w (hours, days, weeks) as a timedelta; ValueError says what is wrong."""
    value = raw.strip().lower()
    match = re.fullmatch(r"(\d{1,9})\s*([a-z]*)", value)
    if match is None or match.group(2) not in AGE_UNITS:
        raise ValueError(f"{raw.strip()!r} is not an age: a whole number of hours, days or weeks (h, d or w)")
    age = int(match.group(1)) * AGE_UNITS[match.group(2)]
    if age < timedelta(hours=1):
        raise ValueError(f"{raw.strip()!r} would keep nothing; the shortest is 1h")
    if age > LONGEST_AGE:
        raise ValueError(f"{raw.strip()!r} is over the longest, {LONGEST_AGE.days}d")
    return age


def describe_age(age: timedelta) -> str:
    """An age for people: "30 days", "1 day", "12 hours"."""
    if age % timedelta(days=1):
        count, unit = age // timedelta(hours=1), "hour"
    else:
        count, unit = age.days, "day"
    return f"{count} {unit}{'' if count == 1 else 's'}"


# Client SDK login tokens: Vonage's samples give 1 h to 24 h, and peers cap SDK tokens at 24 h.
# A Client SDK login token (POST /client/token, flask token): what it may reach, and how long it may last.
# What a Client SDK user may reach (docs/platform.md). The paths that control calls and send messages (/*/calls/**, /*/messages/**)
# are the backend's own and never in a user's token: with them, any logged-in user could place calls anywhere.
CLIENT_SDK_PATHS = (
    "/*/users/**",
    "/*/conversations/**",
    "/*/sessions/**",
    "/*/devices/**",
    "/*/image/**",
    "/*/media/**",
    "/*/applications/**",
    "/*/push/**",
    "/*/knocking/**",
    "/*/legs/**",
)
LONGEST_CLIENT_TOKEN = timedelta(hours=24)
SHORTEST_CLIENT_TOKEN = timedelta(minutes=1)
DURATION_UNITS = {"s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1)}
CLIENT_AUTH_MODES = ("oidc", "key")
MIN_CLIENT_AUTH_KEY_LENGTH = 32
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_token_ttl(raw: str) -> timedelta:
    """CLIENT_TOKEN_TTL: 90s, 15m, 1h or plain seconds, from 1 minute to 24 hours; ValueError says what is wrong."""
    value = raw.strip().lower()
    match = re.fullmatch(r"(\d{1,6})\s*([smh]?)", value)
    if match is None:
        raise ValueError(f"{raw.strip()!r} is not a duration: a whole number of seconds, minutes or hours (s, m, h)")
    ttl = int(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]
    if not SHORTEST_CLIENT_TOKEN <= ttl <= LONGEST_CLIENT_TOKEN:
        raise ValueError(f"{raw.strip()!r} is outside 1m to 24h")
    return ttl


def describe_duration(duration: timedelta) -> str:
    """A token's lifetime for people: "1 hour", "90 minutes", "45 seconds"."""
    seconds = int(duration.total_seconds())
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


_client_auth = _one_of(CLIENT_AUTH_MODES, " (leave it empty for off)")


def identity_url(raw: str) -> str:
    """An identity provider's address: https, or plain http only on this machine (a local issuer); ValueError."""
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError(f"{value!r} is not an https URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{value!r} is plain http; an identity provider is reached over https (http only on loopback)")
    return value


def _client_auth_key(raw: str) -> str:
    value = raw.strip()
    if len(value) < MIN_CLIENT_AUTH_KEY_LENGTH or any(character.isspace() for character in value):
        raise ValueError(f"it must be at least {MIN_CLIENT_AUTH_KEY_LENGTH} characters with no spaces")
    return value


def _trusted_hosts(raw: str) -> tuple[str, ...]:
    hosts = []
    for item in raw.split(","):
        host = item.strip().lower()
        if not host:
            continue
        if not re.fullmatch(r"(\[[0-9a-f:]+\]|[a-z0-9.-]+)(:\d{1,5})?", host):
            raise ValueError(f"{item.strip()!r} is not a host or host:port")
        hosts.append(host)
    return tuple(hosts)


FORWARD_SECRET_PREFIX = "whsec_"
FORWARD_SECRET_EXAMPLE = (
    "whsec_$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(24)).decode())') "
    "(the same secret your app verifies with; comma-separate two while rotating)"
)
MIN_FORWARD_SECRET_BYTES = 16
# What FORWARD_EVENTS may name: an event's status or kind (events.event_kind), or the answer decisions.
ANSWER_DECISIONS = "answer"
STORED_RECORDINGS = "recording"  # FORWARD_EVENTS's name for a recording once stored (calllog.deliveries)
FORWARDABLE = frozenset({*LEG_STATUSES, *OTHER_EVENT_KINDS, ANSWER_DECISIONS, STORED_RECORDINGS})


def forward_url(raw: str) -> str:
    """One FORWARD_URL: https, or plain http only on this machine (a receiver beside the server); ValueError."""
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment or parts.username:
        raise ValueError(f"{value!r} is not an https URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{value!r} is plain http; events are forwarded over https (http only on loopback)")
    return value


def _forward_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(dict.fromkeys(forward_url(part) for part in raw.split(",") if part.strip()))
    if not urls:
        raise ValueError("it holds no URL")
    return urls


def _forward_secrets(raw: str) -> tuple[str, ...]:
    """FORWARD_SECRET: a Standard Webhooks secret (whsec_ and base64), or two while rotating."""
    secrets = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not secrets:
        raise ValueError("it holds no secret")
    if len(secrets) > 2:
        raise ValueError(f"it holds {len(secrets)} secrets; one, or two while rotating")
    for index, secret in enumerate(secrets):
        which = "it" if len(secrets) == 1 else f"the {_ORDINALS[index]} secret"
        if not secret.startswith(FORWARD_SECRET_PREFIX):
            raise ValueError(f"{which} does not start with {FORWARD_SECRET_PREFIX}")
        try:
            key = base64.b64decode(secret[len(FORWARD_SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{which} is not {FORWARD_SECRET_PREFIX} followed by base64") from None
        if len(key) < MIN_FORWARD_SECRET_BYTES:
            raise ValueError(f"{which} holds {len(key)} bytes; a secret needs {MIN_FORWARD_SECRET_BYTES} or more")
    return secrets


def _forward_events(raw: str) -> frozenset[str]:
    names = {part.strip().lower() for part in raw.split(",") if part.strip()}
    if not names:
        raise ValueError("it names nothing (leave it unset to forward everything)")
    unknown = sorted(names - FORWARDABLE)
    if unknown:
        raise ValueError(f"{unknown[0]!r} is no event status; choose among {', '.join(sorted(FORWARDABLE))}")
    return frozenset(names)


def recordings_url(raw: str) -> str:
    """RECORDINGS_URL: s3://BUCKET or s3://BUCKET/PREFIX, or a folder (made when the first recording is stored)."""
    value = raw.strip()
    if value.lower().startswith("s3:"):
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[^?#]*)?", value)
        if match is None:
            raise ValueError(
                f"{value!r} is not s3://BUCKET/PREFIX (a bucket name: 3-63 lowercase letters, digits, . and -)"
            )
        return f"s3://{match.group(1)}/{(match.group(2) or '').strip('/')}".rstrip("/")
    if "://" in value:
        raise ValueError(f"{value!r} is neither a folder nor s3://BUCKET/PREFIX")
    return str(Path(value).expanduser().absolute())


def _s3_endpoint(raw: str) -> str:
    return base_url(raw, "http://127.0.0.1:9000 (MinIO) or https://ACCOUNT.r2.cloudflarestorage.com")


RECORDING_DURATION_UNITS = {**DURATION_UNITS, "d": timedelta(days=1)}


def parse_alert_after(raw: str) -> timedelta:
    """RECORDING_ALERT_AFTER: 30s, 15m, 1h, 2d or plain seconds, up to the 30 days Vonage keeps a recording."""
    value = raw.strip().lower()
    match = re.fullmatch(r"(\d{1,7})\s*([smhd]?)", value)
    if match is None:
        raise ValueError(f"{raw.strip()!r} is not a duration: a whole number of seconds, minutes, hours or days")
    after = int(match.group(1)) * RECORDING_DURATION_UNITS[match.group(2) or "s"]
    if not timedelta(seconds=1) <= after <= timedelta(days=30):
        raise ValueError(f"{raw.strip()!r} is outside 1s to 30d (Vonage keeps a recording for 30 days)")
    return after


def _switch(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("on", "off", "true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{raw.strip()!r} is not on or off")
    return value in ("on", "true", "1", "yes")


def _no_color(raw: str) -> bool:
    # https://no-color.org: set to any value but the empty text, it turns colour off.
    return raw != ""


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"{raw!r} is not one of {', '.join(LOG_FORMATS)}")
    return value


# variable -> (Settings field, parser, a valid example for the error message)
VARIABLES: dict[str, tuple[str, Callable[[str], object], str]] = {
    "HOST": ("host", _text(255), "HOST=0.0.0.0"),
    "PORT": ("port", _integer(1, 65535), "PORT=3000"),
    "WORKERS": ("workers", _integer(1, 64), "WORKERS=2"),
    "VONAGE_NUMBER": ("vonage_number", _vonage_number, "VONAGE_NUMBER=447700900001"),
    "DEFAULT_REGION": ("default_region", _region, "DEFAULT_REGION=GB"),
    "ALLOWED_COUNTRIES": ("allowed_countries", _regions, "ALLOWED_COUNTRIES=GB,IE"),
    "BLOCKED_NUMBER_TYPES": (
        "blocked_number_types",
        _number_types,
        "BLOCKED_NUMBER_TYPES=PREMIUM_RATE,SHARED_COST",
    ),
    "GREETING": ("greeting", _text(1500), 'GREETING="Please wait while we connect you."'),
    "TTS_LANGUAGE": ("tts_language", _language, "TTS_LANGUAGE=en-GB"),
    "TTS_STYLE": (
        "tts_style",
        _integer(0, 99),
        "TTS_STYLE=2 (the styles of each language are in Vonage's text-to-speech guide)",
    ),
    # Two names for one setting: RING_TIMEOUT, read after the older RINGING_TIMEOUT, wins when both are set.
    "RINGING_TIMEOUT": ("ringing_timeout", _integer(1, 120), "RINGING_TIMEOUT=60"),
    "RING_TIMEOUT": ("ringing_timeout", _integer(1, 120), "RING_TIMEOUT=60"),
    "CALL_LIMIT": ("call_limit", _integer(1, 7200), "CALL_LIMIT=3600"),
    "MACHINE_DETECTION": ("machine_detection", _machine_detection, "MACHINE_DETECTION=hangup"),
    "INBOUND_ROUTES": (
        "inbound_routes",
        _inbound_routes,
        "INBOUND_ROUTES=447700900001=Alice,447700900002=Bob",
    ),
    "INBOUND_DEFAULT_USER": ("inbound_default_user", _user_name, "INBOUND_DEFAULT_USER=Alice"),
    "CALLABLE_USERS": ("callable_users", _callable_users, "CALLABLE_USERS=Alice,Bob (or * for any user)"),
    "LOG_FORMAT": ("log_format", _log_format, "LOG_FORMAT=json"),
    "NO_COLOR": ("no_color", _no_color, "NO_COLOR=1"),
    "VONAGE_SIGNATURE_SECRET": (
        "signature_secrets",
        _secrets,
        "VONAGE_SIGNATURE_SECRET=your-signature-secret (from the dashboard's API settings; comma-separate two while rotating)",
    ),
    "SIGNATURE_MAX_AGE": ("signature_max_age", _integer(1, 86400), "SIGNATURE_MAX_AGE=300"),
    "DATABASE_URL": (
        "database_url",
        _database_url,
        DATABASE_EXAMPLE,
    ),
    "CALL_LOG_TOKEN": (
        "call_log_token",
        valid_token,
        "CALL_LOG_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe())')",
    ),
    "INSTANCE_PATH": ("instance_path", _folder, "INSTANCE_PATH=/var/lib/voice-webhooks"),
    "VONAGE_APPLICATION_ID": (
        "application_id",
        _application_id,
        "VONAGE_APPLICATION_ID=aaaaaaaa-bbbb-cccc-dddd-0123456789ab (from your application's page in the dashboard)",
    ),
    "VONAGE_PRIVATE_KEY": ("private_key", _text(10_000), PRIVATE_KEY_EXAMPLE),
    "PUBLIC_URL": ("public_url", base_url, "PUBLIC_URL=https://abc123.ngrok.app"),
    "VONAGE_API_HOST": ("api_host", _api_host, "VONAGE_API_HOST=api-us.vonage.com"),
    "VONAGE_REST_HOST": ("rest_host", _api_host, "VONAGE_REST_HOST=rest.nexmo.com"),
    "VONAGE_TIMEOUT": ("vonage_timeout", _integer(1, 120), "VONAGE_TIMEOUT=15"),
    "VONAGE_API_KEY": ("api_key", _text(64), "VONAGE_API_KEY=abcd1234 (dashboard: API settings)"),
    "VONAGE_API_SECRET": ("api_secret", _text(256), "VONAGE_API_SECRET=... (dashboard: API settings)"),
    "NGROK_API_URL": ("ngrok_api_url", _ngrok_api_url, "NGROK_API_URL=http://127.0.0.1:4040"),
    "AUTO_WEBHOOKS": ("auto_webhooks", _auto_webhooks, "AUTO_WEBHOOKS=ngrok"),
    "CALL_LOG_RETENTION": (
        "call_log_retention",
        parse_age,
        "CALL_LOG_RETENTION=90d (or 12h, 2w; unset keeps the call log forever)",
    ),
    "CLIENT_AUTH": ("client_auth", _client_auth, "CLIENT_AUTH=oidc (or key; unset: no login tokens over HTTP)"),
    "CLIENT_AUTH_ISSUER": (
        "client_auth_issuer",
        identity_url,
        "CLIENT_AUTH_ISSUER=https://securetoken.google.com/your-firebase-project",
    ),
    "CLIENT_AUTH_AUDIENCE": ("client_auth_audience", _text(500), "CLIENT_AUTH_AUDIENCE=your-firebase-project"),
    "CLIENT_AUTH_JWKS_URL": (
        "client_auth_jwks_url",
        identity_url,
        "CLIENT_AUTH_JWKS_URL=https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com",
    ),
    "CLIENT_AUTH_USER_CLAIM": ("client_auth_user_claim", _text(100), "CLIENT_AUTH_USER_CLAIM=sub"),
    "CLIENT_AUTH_KEY": (
        "client_auth_key",
        _client_auth_key,
        "CLIENT_AUTH_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
    ),
    "CLIENT_TOKEN_TTL": ("client_token_ttl", parse_token_ttl, "CLIENT_TOKEN_TTL=1h (or 15m, 3600; at most 24h)"),
    "CLIENT_CREATE_USERS": ("client_create_users", _switch, "CLIENT_CREATE_USERS=on"),
    "RECORD_CALLS": ("record_calls", _switch, "RECORD_CALLS=on"),
    "RECORD_FORMAT": ("record_format", _one_of(RECORD_FORMATS), "RECORD_FORMAT=mp3"),
    "RECORD_ANNOUNCEMENT": (
        "record_announcement",
        _text(1500),
        'RECORD_ANNOUNCEMENT="This call is recorded."',
    ),
    "RECORDINGS_URL": ("recordings_url", recordings_url, "RECORDINGS_URL=s3://my-bucket/calls (or a folder)"),
    "RECORDINGS_S3_ENDPOINT": (
        "recordings_s3_endpoint",
        _s3_endpoint,
        "RECORDINGS_S3_ENDPOINT=http://127.0.0.1:9000 (unset: AWS)",
    ),
    "RECORDING_ALERT_AFTER": ("recording_alert_after", parse_alert_after, "RECORDING_ALERT_AFTER=1h"),
    "RECORDING_RETENTION": ("recording_retention", parse_age, "RECORDING_RETENTION=30d (unset: as long as the call)"),
    "CALL_CONTROL": ("call_control", _switch, "CALL_CONTROL=on"),
    "VONAGE_TRUSTED_HOSTS": (
        "trusted_hosts",
        _trusted_hosts,
        "VONAGE_TRUSTED_HOSTS=127.0.0.1:8443 (for a stand-in of Vonage in tests; Vonage's own hosts need nothing)",
    ),
    "FORWARD_URL": (
        "forward_urls",
        _forward_urls,
        "FORWARD_URL=https://app.example.com/vonage-events (comma-separate several; http only on loopback)",
    ),
    "FORWARD_SECRET": ("forward_secrets", _forward_secrets, f"FORWARD_SECRET={FORWARD_SECRET_EXAMPLE}"),
    "FORWARD_EVENTS": ("forward_events", _forward_events, "FORWARD_EVENTS=completed,failed,busy,answer"),
    "FORWARD_TIMEOUT": ("forward_timeout", _integer(1, 120), "FORWARD_TIMEOUT=15"),
}

# What each CLIENT_AUTH mode cannot do without, and an example of each: (variable, Settings field, example).
CLIENT_AUTH_NEEDS = {
    "oidc": (
        ("CLIENT_AUTH_ISSUER", "client_auth_issuer", "CLIENT_AUTH_ISSUER=https://securetoken.google.com/your-project"),
        ("CLIENT_AUTH_AUDIENCE", "client_auth_audience", "CLIENT_AUTH_AUDIENCE=your-project"),
    ),
    "key": (("CLIENT_AUTH_KEY", "client_auth_key", VARIABLES["CLIENT_AUTH_KEY"][2]),),
}
# What signing a login token needs, whichever the mode.
SIGNING_NEEDS = (
    ("VONAGE_APPLICATION_ID", "application_id", VARIABLES["VONAGE_APPLICATION_ID"][2]),
    ("VONAGE_PRIVATE_KEY", "private_key", PRIVATE_KEY_EXAMPLE),
)


def client_auth_problem(settings: Settings) -> str | None:
    """The one line a CLIENT_AUTH without what it needs stops start-up with, or None when nothing is missing."""
    if settings.client_auth is None:
        if settings.client_create_users:
            return "CLIENT_CREATE_USERS: it creates users as they log in, and CLIENT_AUTH is unset; for example CLIENT_AUTH=oidc"
        return None
    for variable, name, example in (*CLIENT_AUTH_NEEDS[settings.client_auth], *SIGNING_NEEDS):
        if not getattr(settings, name):
            return f"CLIENT_AUTH={settings.client_auth} needs {variable}, which is not set; for example {example}"
    return None


def forwarding_problem(settings: Settings) -> str | None:
    """The one line FORWARD_URL without a secret to sign with stops start-up with, or None."""
    if settings.forward_urls and not settings.forward_secrets:
        return (
            "FORWARD_URL: events cannot be forwarded unsigned, and FORWARD_SECRET is not set; "
            f"for example FORWARD_SECRET={FORWARD_SECRET_EXAMPLE}"
        )
    return None


def recording_problem(settings: Settings) -> str | None:
    """The one line RECORD_CALLS=on without what fetching recordings needs stops start-up with, or None."""
    if not settings.record_calls:
        return None
    for variable, name, example in SIGNING_NEEDS:
        if not getattr(settings, name):
            return f"RECORD_CALLS=on needs {variable} to fetch each recording from Vonage, and it is not set; for example {example}"


def call_control_problem(settings: Settings) -> str | None:
    """The one line CALL_CONTROL=on without the application's credentials stops start-up with, or None: acting on
    a call is a request to Vonage's Voice API signed with the application's key."""
    if not settings.call_control:
        return None
    for variable, name, example in SIGNING_NEEDS:
        if not getattr(settings, name):
            return f"CALL_CONTROL=on needs {variable}, which is not set; for example {example}"
    return None


# Settings holding numbers that may be written in national format: parsed with DEFAULT_REGION (listed before them).
READ_WITH_DEFAULT_REGION = frozenset({"INBOUND_ROUTES"})
# Settings whose blank value is read, not taken as unset: empty lists mean "none"; NO_COLOR is on for any
# value but the empty text.
READ_WHEN_BLANK = frozenset({"ALLOWED_COUNTRIES", "BLOCKED_NUMBER_TYPES", "NO_COLOR"})


def settings_from(values: Mapping[str, str]) -> Settings:
    """Build Settings from a mapping of variable names to text; raise ConfigError on the first bad value.

    A variable that is unset keeps its default; an empty value counts as unset, except for the
    two list settings, where empty means "none", and NO_COLOR, which only the empty text leaves off.
    """
    chosen = {}
    for variable, (name, parse, example) in VARIABLES.items():
        raw = values.get(variable)
        if raw is None or (not raw.strip() and variable not in READ_WHEN_BLANK):
            continue
        try:
            if variable in READ_WITH_DEFAULT_REGION:
                chosen[name] = parse(raw, chosen.get("default_region"))
            else:
                chosen[name] = parse(raw)
        except ValueError as error:
            raise ConfigError(f"{variable}: {error}; for example {example}") from None
    if "database_url" not in chosen and "instance_path" in chosen:
        # Everything the server keeps moves with INSTANCE_PATH, the default database too.
        chosen["database_url"] = f"sqlite:///{Path(chosen['instance_path']) / DATABASE_FILE}"
    settings = Settings(**chosen)
    problem = (
        client_auth_problem(settings)
        or recording_problem(settings)
        or call_control_problem(settings)
        or forwarding_problem(settings)
    )
    if problem is not None:
        raise ConfigError(problem)
    return settings


# Set by serve.py for its workers and its call-log writer: the file that holds the settings it resolved.
HANDOVER_VARIABLE = "VOICE_SERVER_SETTINGS"
HANDOVER_FILE = "settings.pickle"


def hand_over(settings: Settings, folder: str | Path) -> str:
    """Write `settings` into `folder` (the server's own run folder, mode 0700) for its child processes, and point
    HANDOVER_VARIABLE at it: a child then runs on exactly the settings its parent checked, not on the environment
    and .env read again from wherever it runs (the writer runs in the project's folder, the server anywhere)."""
    path = str(Path(folder) / HANDOVER_FILE)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        pickle.dump(settings, file)
    os.environ[HANDOVER_VARIABLE] = path
    return path


def handed_over() -> Settings | None:
    """The settings serve.py handed this process (hand_over), or None outside serve.py's children."""
    path = os.environ.get(HANDOVER_VARIABLE)
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            settings = pickle.load(file)
    except (OSError, pickle.UnpicklingError, EOFError) as error:
        raise ConfigError(f"{HANDOVER_VARIABLE}: cannot read the settings serve.py handed over ({error})") from None
    if not isinstance(settings, Settings):
        raise ConfigError(f"{HANDOVER_VARIABLE}: {path} holds no settings; serve.py sets it, leave it unset")
    return settings


def _env_file_values(env_file: str | Path | None) -> dict[str, str]:
    """The variables a .env file sets (none when there is no such file)."""
    if env_file is None or not Path(env_file).is_file():
        return {}
    return {key: value for key, value in dotenv_values(env_file).items() if value is not None}


def setting_sources(env_file: str | Path | None = ENV_FILE) -> dict[str, str]:
    """Where load_settings found each variable it was given: "environment" or ".env" (the environment wins, as in
    load_settings); a variable in neither is left out (its setting is the default). The `flask` command line copies
    the .env into the environment before the app starts, so a value the environment holds exactly as the .env
    writes it counts as the .env's."""
    in_file = _env_file_values(env_file)
    sources = {}
    for variable in VARIABLES:
        value = os.environ.get(variable)
        if value is not None and value != in_file.get(variable):
            sources[variable] = "environment"
        elif variable in in_file:
            sources[variable] = ".env"
    return sources


def load_settings(env_file: str | Path | None = ENV_FILE) -> Settings:
    """The server's settings: the process environment, over an optional .env file; raise ConfigError on a bad one.
    In a child process of serve.py, the settings it handed over instead (hand_over).

    Every process of the server and every `flask` command starts here, so this is also where what a setting points
    at is checked: the private key (its file, and that it is an RSA key Vonage's JWTs can be signed with; see
    private_key_text). settings_from reads no file, so that tests can name files that are not there.
    """
    handed = handed_over()
    if handed is not None:
        return handed
    values = {**_env_file_values(env_file), **os.environ}
    settings = settings_from(values)
    if settings.private_key:
        try:
            private_key_text(settings.private_key)
        except ValueError as problem:
            raise ConfigError(private_key_refusal(str(problem))) from None
    return settings
