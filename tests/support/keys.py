"""Private keys for the tests of VONAGE_PRIVATE_KEY: real ones made here with cryptography, and the ways a key file
goes wrong (cut short, edited, the public half, a passphrase, another algorithm, not a key at all)."""

from __future__ import annotations

import base64
import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL
PLAIN = serialization.NoEncryption()


@functools.cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pkcs8(key=None) -> bytes:
    return (key or rsa_key()).private_bytes(PEM, PKCS8, PLAIN)


def pkcs1(key=None) -> bytes:
    return (key or rsa_key()).private_bytes(PEM, PKCS1, PLAIN)


def body_of(pem: bytes) -> bytes:
    """The DER inside a PEM block."""
    return base64.b64decode(b"".join(line for line in pem.splitlines() if not line.startswith(b"-----")))


def pem_of(label: str, der: bytes) -> bytes:
    text = base64.encodebytes(der).replace(b"\n", b"")
    lines = [text[start : start + 64] for start in range(0, len(text), 64)]
    return b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""])


def with_a_modulus_byte_changed(pem: bytes) -> bytes:
    """The PKCS#1 key with one byte of its modulus changed: every length still right, the numbers no longer a key."""
    der = bytearray(body_of(pem))
    # SEQUENCE (30 82 xx xx), version (02 01 00), modulus (02 82 01 01 00 ...): a byte well inside the modulus.
    der[4 + 3 + 4 + 100] ^= 0x5A
    return pem_of("RSA PRIVATE KEY", bytes(der))


def bad_variants() -> dict[str, tuple[bytes, str]]:
    """name -> (the file's bytes, words the refusal says)."""
    good = pkcs8()
    lines = good.splitlines(keepends=True)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    encrypted = serialization.BestAvailableEncryption(b"a passphrase")
    return {
        "empty": (b"", "is empty"),
        "blank-lines": (b"\n\n  \n", "is empty"),
        "garbage": (b"hello, this is not a key\n", "no -----BEGIN line"),
        "binary": (body_of(good), "not PEM text"),
        "public-key": (
            rsa_key().public_key().public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            "public key",
        ),
        "rsa-public-key": (rsa_key().public_key().public_bytes(PEM, serialization.PublicFormat.PKCS1), "public key"),
        "certificate": (pem_of("CERTIFICATE", b"\x30\x03\x02\x01\x00"), "a certificate"),
        "encrypted-pkcs8": (rsa_key().private_bytes(PEM, PKCS8, encrypted), "encrypted with a passphrase"),
        "encrypted-pkcs1": (rsa_key().private_bytes(PEM, PKCS1, encrypted), "encrypted with a passphrase"),
        "ec-pkcs8": (ec_key.private_bytes(PEM, PKCS8, PLAIN), "an EC key"),
        "ec-traditional": (ec_key.private_bytes(PEM, PKCS1, PLAIN), "an EC key"),
        "ed25519": (ed25519.Ed25519PrivateKey.generate().private_bytes(PEM, PKCS8, PLAIN), "an Ed25519 key"),
        "openssh": (rsa_key().private_bytes(PEM, serialization.PrivateFormat.OpenSSH, PLAIN), "OpenSSH"),
        "cut-in-half": (good[: len(good) // 2], "no -----END PRIVATE KEY----- line"),
        "lines-missing": (b"".join(lines[:5] + lines[9:]), "damaged"),
        "bad-base64": (b"".join([*lines[:3], lines[3][:10] + b"*" + lines[3][11:], *lines[4:]]), "damaged"),
        "modulus-changed": (with_a_modulus_byte_changed(pkcs1()), "damaged"),
        "short-rsa": (pkcs8(rsa_key(1024)), "1024-bit"),
    }
