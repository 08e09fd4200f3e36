"""`flask token`: Client SDK login tokens (JWTs) signed with the application's private key."""

from __future__ import annotations

import re
import time

from vonage import Auth

from config import CLIENT_SDK_PATHS, LONGEST_CLIENT_TOKEN, Settings
from vonage_helper.clients import DASHBOARD, EXIT_SETTINGS, HelperError, private_key_pem, require

MAX_TOKEN_SECONDS = int(LONGEST_CLIENT_TOKEN.total_seconds())
CLIENT_SDK_ACL = {"paths": {path: {} for path in CLIENT_SDK_PATHS}}


def parse_ttl(text: str) -> int:
    """Seconds from "90", "15m", "1h" or "1d"; raises HelperError beyond 1 s to 24 h."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise HelperError(f"--ttl {text!r} is not a duration; for example --ttl 1h or --ttl 900", EXIT_SETTINGS)
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if not 1 <= seconds <= MAX_TOKEN_SECONDS:
        raise HelperError(f"--ttl {text!r} is outside 1 s to 24 h", EXIT_SETTINGS)
    return seconds


def client_token(settings: Settings, user: str, ttl_seconds: int, now: float | None = None) -> str:
    """A Client SDK JWT (RS256) for `user`, with the tutorial's ACL, valid for `ttl_seconds`."""
    if not user.strip():
        raise HelperError("USER is empty; give the Client SDK user name, e.g. flask token Alice", EXIT_SETTINGS)
    issued = int(now if now is not None else time.time())
    auth = Auth(
        application_id=require(settings.application_id, "VONAGE_APPLICATION_ID", f"copy it from {DASHBOARD}"),
        private_key=private_key_pem(settings.private_key),
    )
    claims = {"sub": user, "acl": CLIENT_SDK_ACL, "iat": issued, "exp": issued + ttl_seconds}
    return auth.generate_application_jwt(claims).decode()
