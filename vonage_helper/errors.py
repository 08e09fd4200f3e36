"""The helper's failures as one line and an exit code; no SDK here, so the server's start-up can use them cheaply."""

from __future__ import annotations

# Exit codes of the commands, by what went wrong.
EXIT_SETTINGS, EXIT_REFUSED, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_RATE_LIMITED, EXIT_VONAGE_DOWN, EXIT_OTHER = (
    2,
    3,
    4,
    5,
    6,
    7,
    8,
)


class HelperError(Exception):
    """A failure to show as one line, with the exit code the command ends with."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
