"""Finding this server's public URL from a running ngrok agent's local API (standard library only: cheap to import)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from config import Settings
from vonage_helper.errors import EXIT_SETTINGS, HelperError

# Nothing listening answers at once; a hung agent must not hold up `make run` by more than this.
STARTUP_TIMEOUT = 0.3
COMMAND_TIMEOUT = 3.0
# The local API is on this machine: a proxy from the environment (HTTP_PROXY) must not be asked for it.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NgrokError(HelperError):
    """No usable tunnel. `running` says whether an agent answered at all (no answer: ngrok is simply not in use)."""

    def __init__(self, message: str, running: bool):
        super().__init__(message, EXIT_SETTINGS)
        self.running = running


@dataclass(frozen=True)
class Tunnel:
    """An https tunnel: its public base URL, where it forwards (config.addr), and whether that is this server."""

    public_url: str
    addr: str
    forwards_here: bool

    def warning(self, port: int) -> str | None:
        if self.forwards_here:
            return None
        return (
            f"ngrok's https tunnel {self.public_url} forwards to {self.addr}, not to this server's port {port}; "
            f"start `ngrok http {port}` for this server"
        )


def forwarded_port(addr: str) -> int | None:
    """The local port an ngrok tunnel's config.addr names: "3000", "localhost:3000" or "http://localhost:3000"."""
    addr = addr.strip()
    if addr.isdigit():
        return int(addr)
    parts = urlsplit(addr if "://" in addr else f"//{addr}")
    try:
        port = parts.port
    except ValueError:
        return None
    if port is None:
        return {"http": 80, "https": 443}.get(parts.scheme)
    return port


def read_tunnels(api_url: str, port: int, timeout: float) -> list[dict]:
    """The `tunnels` list ngrok's local API returns; raises NgrokError."""
    start = f"start it with `ngrok http {port}`, or set NGROK_API_URL to its web interface address"
    try:
        with _opener.open(api_url, timeout=timeout) as response:
            document = json.load(response)
    except urllib.error.HTTPError as error:
        raise NgrokError(
            f"ngrok's local API at {api_url} answered {error.code}; check NGROK_API_URL (the agent's web interface)",
            running=True,
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise NgrokError(f"ngrok is not running: nothing answers at {api_url} ({reason}); {start}", False) from None
    except ValueError:
        raise NgrokError(
            f"{api_url} did not answer like ngrok's local API (not JSON); check NGROK_API_URL", True
        ) from None
    tunnels = document.get("tunnels") if isinstance(document, dict) else None
    if not isinstance(tunnels, list):
        raise NgrokError(
            f"{api_url} did not answer like ngrok's local API (no tunnels list); check NGROK_API_URL", True
        )
    return [tunnel for tunnel in tunnels if isinstance(tunnel, dict)]


def choose_tunnel(tunnels: list[dict], port: int) -> Tunnel:
    """The https tunnel to this server's port, else the first https tunnel (flagged); raises NgrokError if none."""
    secure = [
        Tunnel(str(tunnel["public_url"]).rstrip("/"), str((tunnel.get("config") or {}).get("addr", "?")), False)
        for tunnel in tunnels
        if tunnel.get("proto") == "https" and str(tunnel.get("public_url", "")).startswith("https://")
    ]
    if not secure:
        kinds = ", ".join(sorted({str(tunnel.get("proto")) for tunnel in tunnels})) or "none"
        raise NgrokError(
            f"ngrok runs but has no https tunnel (tunnels: {kinds}); start one with `ngrok http {port}`", True
        )
    for tunnel in secure:
        if forwarded_port(tunnel.addr) == port:
            return Tunnel(tunnel.public_url, tunnel.addr, True)
    return secure[0]


def find_tunnel(settings: Settings, timeout: float = COMMAND_TIMEOUT) -> Tunnel:
    """This server's ngrok tunnel, from the agent's local API at NGROK_API_URL; raises NgrokError."""
    return choose_tunnel(read_tunnels(settings.ngrok_api_url, settings.port, timeout), settings.port)


def tunnel_notes(settings: Settings) -> list[str]:
    """Start-up notes with the public URLs when an ngrok agent runs; none (and at most a moment) when it does not."""
    try:
        tunnel = find_tunnel(settings, STARTUP_TIMEOUT)
    except NgrokError as error:
        return [f"note: {error.message}"] if error.running else []
    public = tunnel.public_url
    notes = [
        f"  ngrok        {public} -> {tunnel.addr}",
        f"  answer URL   {public}/voice/answer   (GET)",
        f"  event URL    {public}/voice/event    (POST)",
        f"  fallback URL {public}/voice/fallback",
    ]
    if tunnel.warning(settings.port):
        notes.append(f"note: {tunnel.warning(settings.port)}")
    return notes
