"""What a test does when a service it needs is not installed: skip with a message saying what to install, on a
developer's machine; fail, in CI (`CI` set), where .ci/run installs everything and a skip would hide a gap."""

import os

import pytest


def unavailable(message: str):
    """Skip the test, or fail it in CI, with `message` (which names what to install)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
