"""The call-log token: CALL_LOG_TOKEN when set, else one generated once and kept in the instance folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from config import ConfigError, Settings, valid_token

TOKEN_FILE = "call_log_token"


def call_log_token(settings: Settings) -> str:
    """The token that opens /calls and /api/calls: the CALL_LOG_TOKEN setting, else the token stored in
    `<instance folder>/call_log_token`, made (mode 0600) on first use. Raises ConfigError, in one line, when
    that file cannot be read or holds no valid token: deleting it makes a new one."""
    path = generated_token_file(settings)
    if path is None:
        return settings.call_log_token
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        _create(path, secrets.token_urlsafe(24))
    except FileExistsError:
        pass  # another process starting at the same moment made it first: use theirs
    except OSError as error:
        raise ConfigError(f"CALL_LOG_TOKEN is unset and {path} cannot be written ({error.strerror}); {_HELP}") from None
    return _read(path)


_HELP = "set CALL_LOG_TOKEN, or fix the instance folder (INSTANCE_PATH)"


def generated_token_file(settings: Settings) -> Path | None:
    """Where the generated token is kept, `<instance folder>/call_log_token`; None when CALL_LOG_TOKEN is set."""
    return None if settings.call_log_token else Path(settings.instance_path) / TOKEN_FILE


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not text"
        raise ConfigError(f"CALL_LOG_TOKEN is unset and {path} cannot be read ({reason}); {_HELP}") from None
    try:
        return valid_token(text)
    except ValueError as error:
        raise ConfigError(
            f"CALL_LOG_TOKEN is unset and {path} holds no valid token ({error}); delete it to have a new one made"
        ) from None


def _create(path: Path, token: str) -> None:
    """Write `token` to `path` (0600) so that no reader ever sees it half-written: it is written under a
    private name, then linked into place, which fails with FileExistsError if the file is already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
