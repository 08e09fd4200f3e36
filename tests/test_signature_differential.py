"""Issue #15: signatures.verify_webhook, the hand-written HS256 check, judged against a reference built on PyJWT.

Several hundred tokens are made from a fixed seed, in categories (valid, expired, wrong algorithm, odd claim
types, base64 garbage...). Each is judged by verify_webhook and by the reference; the verdicts must agree.
Every generated time lies at least MARGIN seconds from any boundary, because PyJWT checks exp and nbf against
the real clock, which cannot be injected: a run would have to take MARGIN seconds to flip a verdict.
"""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import hmac
import json
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge import signatures
from edge.signatures import SignatureError, verify_webhook

SEED = 15
MARGIN = 30
MAX_TOKEN_LENGTH = 4096  # the server's documented limit on a token's length
SECRET = "primary-signature-secret-0123456789abcdef"
SECOND_SECRET = "second-signature-secret-0123456789abcdef"
STRANGER_SECRET = "someone-elses-secret-0123456789abcdef0123"
ACCEPT, REFUSE = "accept", "refuse"
BODIES = [
    b"",
    b"{}",
    b'{"status": "started", "uuid": "u1", "conversation_uuid": "CON-1"}',
    '{"from_user": "Zoë", "to": "447700900000"}'.encode(),
    b"status=ringing&uuid=u2",
    b"\xff\xfe not UTF-8 \x80",
]


@dataclass(frozen=True)
class Case:
    """One token to judge, with the request it came with and the server's configuration."""

    category: str
    note: str
    token: str
    body: bytes
    secrets: tuple[str, ...]
    max_age: int
    intended: str | None  # the verdict the generator meant (None: it depends on the variant)


# --- building tokens byte by byte, so that anything can be malformed ---------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(part) -> str:
    """A token segment: a dict or list as JSON, bytes as they are, a str taken as an already-made segment."""
    if isinstance(part, str):
        return part
    return b64url(part if isinstance(part, bytes) else json.dumps(part).encode())


def hs_signature(signing_input: str, secret: str, digest=hashlib.sha256) -> str:
    return b64url(hmac.new(secret.encode(), signing_input.encode(), digest).digest())


def token(header, claims, secret: str = SECRET, digest=hashlib.sha256) -> str:
    """A token whose signature is right for exactly these segments (HMAC with `digest`)."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    return f"{signing_input}.{hs_signature(signing_input, secret, digest)}"


HS256 = {"alg": "HS256", "typ": "JWT"}
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class Maker:
    """Makes the cases of every category from one random generator and one `now`."""

    def __init__(self, seed: int, now: float):
        self.rng = random.Random(seed)
        self.now = now

    def body(self) -> bytes:
        if self.rng.random() < 0.2:
            return self.rng.randbytes(self.rng.randrange(1, 200))
        return self.rng.choice(BODIES)

    def max_age(self) -> int:
        return self.rng.choice([60, 300, 3600])

    def fresh_iat(self, max_age: int) -> int:
        """An iat at least MARGIN seconds inside the window, either side of now."""
        return int(self.now) + self.rng.randint(-(max_age - MARGIN), max_age - MARGIN)

    def stale_iat(self, max_age: int) -> int:
        """An iat at least MARGIN seconds outside the window, before or after now."""
        offset = max_age + MARGIN + self.rng.randrange(0, 100_000)
        return int(self.now) + self.rng.choice([-1, 1]) * offset

    def claims(self, body: bytes, max_age: int) -> dict:
        """Claims as Vonage signs them, with some optional ones."""
        claims = {
            "iat": self.fresh_iat(max_age),
            "jti": f"{self.rng.getrandbits(64):016x}",
            "iss": "Vonage",
            "api_key": "abcd1234",
            "payload_hash": hashlib.sha256(body).hexdigest(),
        }
        if self.rng.random() < 0.5:
            claims["application_id"] = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
        if self.rng.random() < 0.3:
            claims["exp"] = int(self.now) + MARGIN + self.rng.randrange(0, 10_000)
        if self.rng.random() < 0.3:
            claims["nbf"] = int(self.now) - MARGIN - self.rng.randrange(0, 10_000)
        if self.rng.random() < 0.2:
            del claims["iss"]
        return claims

    def case(self, category, note, make: Callable[[dict, bytes], str], intended, secrets=(SECRET,)) -> Case:
        """A case whose token `make` builds from fresh valid claims for a fresh body."""
        body, max_age = self.body(), self.max_age()
        return Case(category, note, make(self.claims(body, max_age), body), body, secrets, max_age, intended)


# --- the categories ----------------------------------------------------------------------------------


def valid(maker: Maker) -> Iterator[Case]:
    typs = [{}, {"typ": "JWT"}, {"typ": "jwt"}, {"typ": "JOSE"}, {"typ": 7}, {"kid": "key-1"}, {"cty": "JWT"}]
    for index in range(60):
        header = {"alg": "HS256", **typs[index % len(typs)]}
        yield maker.case("valid", f"header {header}", lambda claims, _, h=header: token(h, claims), ACCEPT)
    for _ in range(10):
        yield maker.case("valid", "payload_hash in upper case", lambda c, _: token(HS256, upper_hash(c)), ACCEPT)
    for _ in range(5):
        yield maker.case("valid", "long extra claim", lambda c, _: token(HS256, {**c, "x": "y" * 2500}), ACCEPT)


def upper_hash(claims: dict) -> dict:
    return {**claims, "payload_hash": claims["payload_hash"].upper()}


def rotation(maker: Maker) -> Iterator[Case]:
    both = (SECRET, SECOND_SECRET)
    for _ in range(15):
        yield maker.case("second secret", "configured", lambda c, _: token(HS256, c, SECOND_SECRET), ACCEPT, both)
    for _ in range(10):
        yield maker.case("second secret", "primary, both configured", lambda c, _: token(HS256, c), ACCEPT, both)
    for _ in range(10):
        yield maker.case("second secret", "not configured", lambda c, _: token(HS256, c, SECOND_SECRET), REFUSE)
    for _ in range(15):
        yield maker.case("wrong secret", "stranger's", lambda c, _: token(HS256, c, STRANGER_SECRET), REFUSE, both)


def stale(maker: Maker) -> Iterator[Case]:
    now = int(maker.now)
    for _ in range(20):
        expired = now - MARGIN - maker.rng.randrange(0, 100_000)
        yield maker.case(
            "expired", f"exp now{expired - now:+d}", lambda c, _, e=expired: token(HS256, {**c, "exp": e}), REFUSE
        )
    for _ in range(20):
        yield maker.case("expired", "iat outside max_age", lambda c, _: token(HS256, stale_claims(maker, c)), REFUSE)
    for _ in range(20):
        ahead = now + MARGIN + maker.rng.randrange(0, 100_000)
        yield maker.case(
            "future", f"nbf now{ahead - now:+d}", lambda c, _, a=ahead: token(HS256, {**c, "nbf": a}), REFUSE
        )
    for _ in range(10):
        far = now + 10**9 + maker.rng.randrange(0, 100)
        yield maker.case("future", "iat far ahead", lambda c, _, f=far: token(HS256, {**c, "iat": f}), REFUSE)


def stale_claims(maker: Maker, claims: dict) -> dict:
    # The claims' max_age is not known here, so step outside the largest window used.
    return {**claims, "iat": maker.stale_iat(3600)}


@functools.cache
def rsa_private_pem() -> bytes:
    """One RSA key per run: RS256 signatures are deterministic, so the cases are too."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def wrong_algorithm(maker: Maker) -> Iterator[Case]:
    pem = rsa_private_pem()
    for _ in range(8):
        yield maker.case("wrong alg", "HS512", lambda c, _: token({"alg": "HS512"}, c, SECRET, hashlib.sha512), REFUSE)
        yield maker.case("wrong alg", "HS384", lambda c, _: token({"alg": "HS384"}, c, SECRET, hashlib.sha384), REFUSE)
        yield maker.case("wrong alg", "RS256", lambda c, _: rs256(c, pem), REFUSE)
        yield maker.case("wrong alg", "HS256 signature, HS512 header", lambda c, _: token({"alg": "HS512"}, c), REFUSE)
    for alg in ["hs256", "HS256 ", "", None, 256, ["HS256"], {"HS256": 1}]:
        yield maker.case("wrong alg", f"alg {alg!r}", lambda c, _, a=alg: token({"alg": a}, c), REFUSE)
    for _ in range(5):
        yield maker.case("wrong alg", "no alg", lambda c, _: token({"typ": "JWT"}, c), REFUSE)
    for header in [{"alg": "none"}, {"alg": "None"}, {"alg": "NONE"}, {"alg": "none", "typ": "JWT"}]:
        for _ in range(3):
            yield maker.case("alg none", f"{header}, empty signature", lambda c, _, h=header: unsigned(h, c), REFUSE)
        yield maker.case("alg none", f"{header}, HS256 signature", lambda c, _, h=header: token(h, c), REFUSE)


def rs256(claims: dict, pem: bytes) -> str:
    return jwt.encode(claims, pem, algorithm="RS256")


def unsigned(header: dict, claims: dict) -> str:
    return f"{segment(header)}.{segment(claims)}."


def missing_claims(maker: Maker) -> Iterator[Case]:
    for name in ["iat", "payload_hash"]:
        for _ in range(8):
            yield maker.case("missing claim", f"no {name}", lambda c, _, n=name: token(HS256, without(c, n)), REFUSE)
        for _ in range(4):
            yield maker.case("missing claim", f"{name} null", lambda c, _, n=name: token(HS256, {**c, n: None}), REFUSE)
    yield maker.case("missing claim", "empty claims", lambda c, _: token(HS256, {}), REFUSE)


def without(claims: dict, name: str) -> dict:
    return {key: value for key, value in claims.items() if key != name}


def wrong_payload_hash(maker: Maker) -> Iterator[Case]:
    variants: list[tuple[str, Callable[[str], object]]] = [
        ("of another body", lambda h: hashlib.sha256(b'{"status": "forged"}').hexdigest()),
        ("last character changed", lambda h: h[:-1] + ("0" if h[-1] != "0" else "1")),
        ("truncated", lambda h: h[:32]),
        ("with a space", lambda h: h + " "),
        ("sha1", lambda h: hashlib.sha1(b"{}").hexdigest()),
        ("as a list", lambda h: [h]),
        ("as a number", lambda h: 12345),
        ("as bytes in base64", lambda h: b64url(bytes.fromhex(h))),
        ("empty", lambda h: ""),
        ("true", lambda h: True),
    ]
    for note, change in variants:
        for _ in range(3):
            yield maker.case(
                "wrong payload_hash",
                note,
                lambda c, _, f=change: token(HS256, {**c, "payload_hash": f(c["payload_hash"])}),
                REFUSE,
            )


ODD_TIMES: list[tuple[str, Callable[[int], object]]] = [
    ("whole float", float),
    ("fraction", lambda t: t + 0.5),
    ("NaN", lambda t: float("nan")),
    ("Infinity", lambda t: float("inf")),
    ("-Infinity", lambda t: float("-inf")),
    ("string", str),
    ("true", lambda t: True),
    ("false", lambda t: False),
    ("list", lambda t: [t]),
    ("object", lambda t: {"t": t}),
    ("null", lambda t: None),
    ("huge int", lambda t: 10**40),
]


def odd_time_types(maker: Maker) -> Iterator[Case]:
    """Each time claim given a value of another type, around a time that is otherwise valid."""
    now = int(maker.now)
    good_values = {"iat": None, "exp": now + 3 * 3600, "nbf": now - 3 * 3600}
    for name, good in good_values.items():
        for note, odd in ODD_TIMES:
            if name != "iat" and note == "huge int":
                continue  # a huge exp is valid, a huge nbf refused for its value: not a type question

            def make(claims, _, n=name, g=good, f=odd):
                return token(HS256, {**claims, n: f(claims["iat"] if g is None else g)})

            yield maker.case("odd claim type", f"{name} {note}", make, REFUSE)


def claims_not_object(maker: Maker) -> Iterator[Case]:
    for raw in [b"[1, 2]", b'"claims"', b"42", b"null", b"true", b"", b"{", b"\xff\xfe", b'{"iat": 1}x', b"NaN"]:
        yield maker.case("claims not object", f"claims {raw!r}", lambda c, _, r=raw: token(HS256, r), REFUSE)


def header_not_json(maker: Maker) -> Iterator[Case]:
    raws = [b"", b"{", b"[]", b'"HS256"', b"null", b"\xff", b'{"alg": "HS256"', b'{"alg": "HS256"}x', b"HS256"]
    for raw in raws:
        yield maker.case("header not JSON", f"header {raw!r}", lambda c, _, r=raw: token(r, c), REFUSE)


def deep_nesting(maker: Maker) -> Iterator[Case]:
    """JSON nested deeper than Python's parser goes (about 1000 levels), small enough for a 4096-character token."""
    for depth in [990, 1000, 1100, 1300]:
        deep = b"[" * depth + b"]" * depth
        yield maker.case("deep nesting", f"header: an array {depth} deep", lambda c, _, d=deep: token(d, c), REFUSE)
    for depth in [1000, 1300]:
        deep = b'{"alg": "HS256", "x": ' + b"[" * depth + b"]" * depth + b"}"
        note = f"header: alg and an array {depth} deep"
        yield maker.case("deep nesting", note, lambda c, _, d=deep: token(d, c), REFUSE)
    for depth in [1000, 1200]:
        deep = b'{"iat": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"
        note = f"signed claims with an array {depth} deep"
        yield maker.case("deep nesting", note, lambda c, _, d=deep: token(HS256, d), REFUSE)


def base64_garbage(maker: Maker) -> Iterator[Case]:
    """Tokens whose segments are not canonical base64url: PyJWT refuses them (GHSA-hxm8-2xgr-2p9m)."""
    mutations: list[tuple[str, Callable[[str], str]]] = [
        ("'!!!!' inside the signature", lambda t: splice(t, 2, 5, "!!!!")),
        ("'====' after the signature", lambda t: t + "===="),
        ("signature in the standard alphabet", standard_alphabet),
        ("last signature character changed in its unused bits", noncanonical_signature),
        ("a signature character dropped", lambda t: t[:-1]),
        ("signature of 1 more than a multiple of 4", lambda t: t + "A"),
        ("empty signature", lambda t: t.rsplit(".", 1)[0] + "."),
        ("non-ASCII in the signature", lambda t: splice(t, 2, 3, "é")),
    ]
    for note, mutate in mutations:
        for _ in range(3):
            yield maker.case("base64 garbage", note, lambda c, _, m=mutate: m(url_characters_token(c)), REFUSE)
    for where in ["header", "claims"]:
        for garbage in ["!!!!", "*@@@", "====", " \t\n ", "é"]:
            note = f"{garbage!r} inside the {where}, signed over as sent"
            yield maker.case("base64 garbage", note, lambda c, _, w=where, g=garbage: dirty(w, g, c), REFUSE)


def splice(token_text: str, part: int, at: int, text: str) -> str:
    parts = token_text.split(".")
    parts[part] = parts[part][:at] + text + parts[part][at:]
    return ".".join(parts)


def standard_alphabet(token_text: str) -> str:
    """The token with its signature in standard base64 ('+', '/'); see url_characters_token."""
    head, signature = token_text.rsplit(".", 1)
    return f"{head}.{signature.replace('-', '+').replace('_', '/')}"


def url_characters_token(claims: dict) -> str:
    """A valid token whose signature has a '-' or '_' (three tokens in four do), so that writing it in the
    standard alphabet changes its text but not its bytes."""
    for attempt in range(100):
        made = token(HS256, {**claims, "jti": f"{claims.get('jti', '')}-{attempt}"})
        if set(made.rsplit(".", 1)[1]) & {"-", "_"}:
            return made
    raise AssertionError("no signature with '-' or '_' in 100 tries")


def noncanonical_signature(token_text: str) -> str:
    """The signature with one unused low bit of its last character flipped: the same bytes, another text.

    32 bytes take 43 characters, the last of which carries 4 bits and 2 unused ones."""
    head, signature = token_text.rsplit(".", 1)
    last = BASE64URL.index(signature[-1])
    return f"{head}.{signature[:-1]}{BASE64URL[last ^ 1]}"


def dirty(where: str, garbage: str, claims: dict) -> str:
    header, body = segment(HS256), segment(claims)
    if where == "header":
        header = header[:4] + garbage + header[4:]
    else:
        body = body[:4] + garbage + body[4:]
    return token(header, body)


def dots_and_segments(maker: Maker) -> Iterator[Case]:
    shapes: list[tuple[str, Callable[[str], str]]] = [
        ("an extra dot at the end", lambda t: t + "."),
        ("an extra segment", lambda t: t + ".AAAA"),
        ("a dot doubled", lambda t: t.replace(".", "..", 1)),
        ("header only", lambda t: t.split(".")[0]),
        ("two segments", lambda t: t.rsplit(".", 1)[0]),
        ("a dot in front", lambda t: "." + t),
        ("just dots", lambda t: ".."),
        ("empty header segment", lambda t: "." + t.split(".", 1)[1]),
    ]
    for note, shape in shapes:
        for _ in range(2):
            yield maker.case("extra dots", note, lambda c, _, s=shape: s(token(HS256, c)), REFUSE)


def header_extensions(maker: Maker) -> Iterator[Case]:
    variants = [
        ({"crit": ["exp"]}, REFUSE),
        ({"crit": ["b64"], "b64": True}, REFUSE),
        ({"crit": ["b64"], "b64": False}, REFUSE),
        ({"b64": True}, REFUSE),
        ({"b64": False}, REFUSE),
        ({"crit": []}, REFUSE),
        ({"crit": "b64"}, REFUSE),
        ({"crit": None}, REFUSE),
        ({"kid": "vonage-1"}, ACCEPT),
        ({"kid": ""}, ACCEPT),
        ({"kid": 7}, None),
        ({"kid": None}, None),
        ({"kid": ["a"]}, None),
        ({"typ": None}, ACCEPT),
        ({"typ": "JWS", "cty": "json"}, ACCEPT),
        ({"jku": "https://evil.example/keys"}, ACCEPT),
        ({"x5u": "https://evil.example/cert"}, ACCEPT),
    ]
    for extra, intended in variants:
        for _ in range(2):
            header = {"alg": "HS256", **extra}
            yield maker.case("header variants", f"header {extra}", lambda c, _, h=header: token(h, c), intended)


def issuer(maker: Maker) -> Iterator[Case]:
    for value, intended in [
        ("Vonage", ACCEPT),
        ("vonage", REFUSE),
        ("Mallory", REFUSE),
        (None, REFUSE),
        (1, REFUSE),
        (["Vonage"], REFUSE),
        ("", REFUSE),
    ]:
        for _ in range(3):
            yield maker.case("issuer", f"iss {value!r}", lambda c, _, v=value: token(HS256, {**c, "iss": v}), intended)


def oversized(maker: Maker) -> Iterator[Case]:
    for size in [3000, 3100, 4000, 6000]:
        yield maker.case(
            "length",
            f"an extra claim of {size} characters",
            lambda c, _, s=size: token(HS256, {**c, "x": "y" * s}),
            None,
        )


CATEGORIES = [
    valid,
    rotation,
    stale,
    wrong_algorithm,
    missing_claims,
    wrong_payload_hash,
    odd_time_types,
    claims_not_object,
    header_not_json,
    deep_nesting,
    base64_garbage,
    dots_and_segments,
    header_extensions,
    issuer,
    oversized,
]


def generated_cases(now: float) -> list[Case]:
    maker = Maker(SEED, now)
    return [case for category in CATEGORIES for case in category(maker)]


# --- the two verdicts --------------------------------------------------------------------------------


def server_verdict(case: Case, now: float) -> str:
    """What verify_webhook says: accept, refuse (SignatureError), or the exception it let out."""
    try:
        verify_webhook("Bearer " + case.token, "POST", case.body, [], list(case.secrets), now, case.max_age)
    except SignatureError:
        return REFUSE
    except Exception as error:  # anything else is a crash the differential must report, not hide
        return f"raised {type(error).__name__}"
    return ACCEPT


def reference_verdict(case: Case, now: float) -> str:
    """PyJWT's verdict, with the rules of Vonage's scheme that PyJWT does not know.

    PyJWT: jwt.decode(token, secret, algorithms=["HS256"], options={"verify_iat": False, "require": ["iat"]})
    succeeds for at least one configured secret (signature, header, base64url, exp and nbf against its own
    clock). Then, on the claims it decoded:
      - payload_hash is a string equal to sha256(body).hexdigest(), compared case-insensitively;
      - |now - iat| <= max_age;
      - iss, if present, is "Vonage";
      - iat, exp and nbf, when present, are ints and not bools (this server refuses fractions, NaN, infinities
        and strings, where PyJWT converts them with int());
      - the header names neither "crit" nor "b64" (this server implements no JWS extensions);
      - the token is at most 4096 characters (the server's limit).
    """
    if len(case.token) > MAX_TOKEN_LENGTH:
        return REFUSE
    claims = pyjwt_claims(case)
    if claims is None or not vonage_rules_hold(case, claims, now):
        return REFUSE
    header = jwt.get_unverified_header(case.token)
    return REFUSE if "crit" in header or "b64" in header else ACCEPT


def pyjwt_claims(case: Case) -> dict | None:
    options = {"verify_iat": False, "require": ["iat"]}
    for secret in case.secrets:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return jwt.decode(case.token, secret, algorithms=["HS256"], options=options)
        except jwt.InvalidTokenError:
            continue
    return None


def vonage_rules_hold(case: Case, claims: dict, now: float) -> bool:
    claimed_hash = claims.get("payload_hash")
    if not isinstance(claimed_hash, str) or claimed_hash.lower() != hashlib.sha256(case.body).hexdigest():
        return False
    for name in ("iat", "exp", "nbf"):
        value = claims.get(name)
        if name in claims and (not isinstance(value, int) or isinstance(value, bool)):
            return False
    if abs(now - claims["iat"]) > case.max_age:
        return False
    return "iss" not in claims or claims["iss"] == "Vonage"


def disagreements(cases: list[Case], now: float) -> list[tuple[Case, str, str]]:
    judged = [(case, server_verdict(case, now), reference_verdict(case, now)) for case in cases]
    return [(case, server, reference) for case, server, reference in judged if server != reference]


def summary(found: list[tuple[Case, str, str]]) -> str:
    """One line per kind of disagreement: category, verdicts, how many, and the first example's note."""
    groups: dict[tuple[str, str, str], list[Case]] = collections.defaultdict(list)
    for case, server, reference in found:
        groups[(case.category, server, reference)].append(case)
    return "\n".join(
        f"  {category}: verify_webhook {server}, reference {reference}: {len(cases)} tokens, e.g. {cases[0].note}"
        for (category, server, reference), cases in groups.items()
    )


# --- the tests ---------------------------------------------------------------------------------------


@pytest.fixture
def now() -> float:
    return time.time()


@pytest.fixture
def cases(now) -> list[Case]:
    return generated_cases(now)


def test_verify_webhook_agrees_with_the_pyjwt_reference_on_every_generated_token(cases, now):
    found = disagreements(cases, now)
    print(f"\n{len(cases)} tokens judged, {len(found)} disagreements")
    if found:
        pytest.fail("verify_webhook and the reference disagree:\n" + summary(found), pytrace=False)


def test_generated_tokens_cover_every_category(cases):
    counts = collections.Counter(case.category for case in cases)
    print("\ntokens per category: " + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())))
    assert sum(counts.values()) >= 300
    assert all(count >= 4 for count in counts.values()), counts


def test_generation_is_deterministic_for_a_given_now(now):
    assert generated_cases(now) == generated_cases(now)


def test_reference_gives_each_token_the_verdict_its_category_intends(cases, now):
    """Guards the harness itself: a generator bug that made every "valid" token invalid would make the
    differential agree vacuously."""
    wrong = [case for case in cases if case.intended and reference_verdict(case, now) != case.intended]
    assert not wrong, [(case.category, case.note) for case in wrong[:10]]


def test_differential_catches_a_check_that_reads_fractional_times_as_seconds(cases, now, monkeypatch):
    """The harness has teeth: a verify_webhook whose time claims accept floats, as int() would read them,
    disagrees with the reference on the fractional and whole-float tokens."""
    strict = signatures._time_claim

    def lenient(claims: dict, name: str):
        value = claims.get(name)
        if isinstance(value, float) and value == value and abs(value) != float("inf"):
            return int(value)
        return strict(claims, name)

    monkeypatch.setattr(signatures, "_time_claim", lenient)
    notes = {case.note for case, _, _ in disagreements(cases, now) if case.category == "odd claim type"}
    assert {"iat whole float", "iat fraction", "exp fraction", "nbf whole float"} <= notes


# --- the smallest reproductions of what the differential found ---------------------------------------


def verdict_of(token_text: str, body: bytes = b"{}") -> str:
    now = time.time()
    return server_verdict(Case("repro", "", token_text, body, (SECRET,), 300, None), now)


def fresh_claims(body: bytes = b"{}") -> dict:
    return {"iat": int(time.time()), "iss": "Vonage", "payload_hash": hashlib.sha256(body).hexdigest()}


def test_a_header_nested_deeper_than_the_json_parser_goes_is_refused_not_raised():
    """Before any signature check: 1430 nested arrays fit in a 4 KB token, under the 4096 limit. (The header's
    parse is cached by segment: no other test sends this one.)"""
    assert verdict_of(token(b"[" * 1430 + b"]" * 1430, fresh_claims())) == REFUSE


def test_signed_claims_nested_deeper_than_the_json_parser_goes_are_refused_not_raised():
    claims = b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert verdict_of(token(HS256, claims)) == REFUSE


@pytest.mark.parametrize(
    "mutate",
    [lambda t: splice(t, 2, 5, "!!!!"), lambda t: t + "====", standard_alphabet, noncanonical_signature],
    ids=["garbage-inside", "padding-after", "standard-alphabet", "unused-bit-set"],
)
def test_a_valid_token_with_its_signature_re_encoded_is_refused(mutate):
    """A signature segment is canonical base64url (RFC 7515 §2); PyJWT refuses any other spelling of it."""
    genuine = url_characters_token(fresh_claims())
    assert verdict_of(genuine) == ACCEPT
    assert verdict_of(mutate(genuine)) == REFUSE


@pytest.mark.parametrize("where", ["header", "claims"])
def test_a_segment_with_characters_outside_base64url_is_refused_even_when_signed(where):
    assert verdict_of(dirty(where, "!!!!", fresh_claims())) == REFUSE


def test_a_key_id_that_is_not_text_is_refused():
    """RFC 7515 §4.1.4: kid is a string; PyJWT refuses a token whose kid is not."""
    assert verdict_of(token({"alg": "HS256", "kid": 7}, fresh_claims())) == REFUSE
