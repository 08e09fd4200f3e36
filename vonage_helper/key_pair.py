"""The application's key pair for `flask setup`: made here, so the private half never leaves this machine, and its
file written readable by its owner only from the moment it exists."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config import MIN_RSA_BITS
from vonage_helper.errors import EXIT_SETTINGS, HelperError


def new_key_pair() -> tuple[str, str]:
    """A new RSA key pair as PEM text: (the private key as PKCS#8, as the dashboard's private.key; the public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


def is_public_half(private_pem: str, public_pem: str | None) -> bool:
    """Whether `public_pem` (an application's keys.public_key) is the public half of `private_pem`."""
    if not public_pem:
        return False
    try:
        private = serialization.load_pem_private_key(private_pem.encode(), password=None)
        public = serialization.load_pem_public_key(public_pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return private.public_key() == public


@contextlib.contextmanager
def key_file_written(path: Path, private_pem: str, replace: bool) -> Iterator[None]:
    """Write `private_pem` to `path` (mode 0600) around the block that makes it the application's key.

    The file is created with O_CREAT | O_EXCL and mode 0600, so it is never another user's to read, not even for
    a moment, and never an existing file opened by mistake (a symlink planted at the path included). Without
    `replace` it is `path` itself, and an existing file is refused; with `replace` it is a new file beside it that
    takes its place once the block has succeeded, so the old key stays until there is an application for the new
    one. If the block fails, what was written is removed.
    """
    target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial") if replace else path
    _write_new(target, private_pem, path)
    try:
        yield
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if replace:
        try:
            os.replace(target, path)
        except OSError as error:
            raise HelperError(
                f"the new key is in {target}, but it could not replace {path} ({error.strerror}); move it there",
                EXIT_SETTINGS,
            ) from None


def _write_new(target: Path, private_pem: str, path: Path) -> None:
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise HelperError(
            f"{path} exists: it may be the key of another application, so it is kept; move it away, or run "
            "flask setup --force to replace it",
            EXIT_SETTINGS,
        ) from None
    except OSError as error:
        raise HelperError(
            f"cannot write {path} ({error.strerror}); check the folder's permissions", EXIT_SETTINGS
        ) from None
    try:
        with os.fdopen(descriptor, "w") as file:
            os.fchmod(descriptor, 0o600)  # whatever the umask: the owner must be able to read it, and no one else
            file.write(private_pem)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        target.unlink(missing_ok=True)
        raise HelperError(f"cannot write {path} ({error.strerror}); check the disk", EXIT_SETTINGS) from None
