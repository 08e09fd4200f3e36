"""Writes docs/images/call-log.png: the call-log page, 1200 px wide in headless Chromium, over a temporary call log
holding one call of each kind (completed, busy, failed, refused, unanswered, still ringing).

    .venv/bin/python docs/screenshot.py        # needs Playwright and Debian's chromium (/usr/bin/chromium)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from simulator.client import Simulator  # noqa: E402

OUTPUT = ROOT / "docs" / "images" / "call-log.png"
TOKEN = "screenshot-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# (number called, how the callee's leg ends, seconds talked): the refused one is a premium-rate number.
CALLS = (
    ("447700900123", "answered", 48),
    ("447700900456", "busy", 0),
    ("447700900789", "failed", 0),
    ("449098790000", "answered", 0),
    ("447700900321", "unanswered", 0),
    ("447700900000", "answered", 125),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WORKERS": "1",
        "DATABASE_URL": f"sqlite:///{folder / 'calls.db'}",
        "CALL_LOG_TOKEN": TOKEN,
        "INSTANCE_PATH": str(folder),
        "AUTO_WEBHOOKS": "",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py")], cwd=tempfile.gettempdir(), env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("the server did not start")


def fill(base: str) -> None:
    """One call of each outcome, as Vonage would send them, and one still ringing."""
    simulator = Simulator(base)
    for number, outcome, seconds in CALLS:
        simulator.call(number, outcome, duration=seconds)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for leg, direction, status, to in (
        ("leg-ringing-in", "inbound", "answered", "Alice"),
        ("leg-ringing-out", "outbound", "ringing", "447700900999"),
    ):
        event = {"uuid": leg, "conversation_uuid": "CON-ringing-0001", "status": status, "direction": direction}
        event.update({"from": "Alice" if direction == "outbound" else None, "to": to, "timestamp": now})
        requests.post(f"{base}/voice/event", json=event, timeout=10).raise_for_status()


def shoot(base: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-GB")
        page = context.new_page()
        page.goto(f"{base}/calls?token={TOKEN}")
        page.wait_for_selector('details.call[data-outcome="completed"]')
        # The first call open, to show its compact timeline.
        first = page.locator('details.call[data-outcome="completed"]').first
        first.locator("summary").first.click()
        first.locator(".timeline .event").first.wait_for()
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        # The page's policy refuses an added style; the screenshot stops the pulse itself.
        page.screenshot(path=str(OUTPUT), full_page=True, animations="disabled")
        browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="call-log-screenshot-") as folder:
        process, base = start_server(Path(folder))
        try:
            fill(base)
            shoot(base)
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
