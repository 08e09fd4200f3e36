"""Headless Chromium from Debian, driven by Playwright: a launcher, or a skip (a failure in CI) saying what to install."""

import os

from support.needs import unavailable

CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium reaches for Google's services, which this machine's network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    message = "browser tests need Debian's Chromium: `apt-get install chromium` (bash .ci/run installs it)"
    unavailable(message)
