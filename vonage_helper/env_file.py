"""Setting variables in the project's .env for `flask setup`, every other line and comment kept as it was.

The file is read with python-dotenv's own parser, the one config.load_settings reads it with, so a value is
replaced exactly where the server would find it: a quoted value over several lines (a PEM key) goes whole.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from pathlib import Path

from dotenv.parser import Binding, parse_stream

from vonage_helper.errors import EXIT_SETTINGS, HelperError

# Above the lines `flask setup` adds to a .env, so a reader knows where they came from.
ADDED_BY = "# added by flask setup"


class EnvFile:
    """A .env file: what it sets, and writing new values into it (atomically, its mode and any symlink kept)."""

    def __init__(self, path: Path):
        self.path = path
        self.bindings = self._read()

    def value(self, name: str) -> str | None:
        """The value the file gives `name`, as dotenv reads it (the last assignment wins); None if it has none."""
        values = [binding.value for binding in self.bindings if binding.key == name]
        return values[-1] if values else None

    def check_writable(self) -> None:
        """Raise HelperError unless the file, and the folder its replacement is made in, can be written."""
        target = self.path.resolve()
        try:
            if target.exists():
                with open(target, "a"):
                    pass
            descriptor, probe = _new_file_beside(target)
            os.close(descriptor)
            os.unlink(probe)
        except OSError as error:
            raise self._refusal(error) from None

    def set(self, values: dict[str, str]) -> None:
        """Give each name its value: an assignment already there is replaced where it stands, a new one is added at
        the end. Every other line stays as it was. Raises HelperError."""
        lines = [
            f"{binding.key}={values[binding.key]}\n" if binding.key in values else binding.original.string
            for binding in self.bindings
        ]
        added = [name for name in values if not any(binding.key == name for binding in self.bindings)]
        if added:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines += [f"{ADDED_BY}\n", *(f"{name}={values[name]}\n" for name in added)]
        self._replace("".join(lines))
        self.bindings = self._read()

    def _read(self) -> list[Binding]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise self._refusal(error) from None
        return list(parse_stream(io.StringIO(text)))

    def _replace(self, text: str) -> None:
        # The new text goes to a new file beside the old one, which then takes its place in one step: a failure
        # midway leaves the old .env whole. A symlinked .env is written where the link points, and the link stays.
        target = self.path.resolve()
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o600  # it will hold the application's id next to the account's key and secret
        partial = None
        try:
            descriptor, partial = _new_file_beside(target)
            os.fchmod(descriptor, mode)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        except OSError as error:
            if partial is not None:
                Path(partial).unlink(missing_ok=True)
            raise self._refusal(error) from None

    def _refusal(self, error: Exception) -> HelperError:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return HelperError(
            f"cannot update {self.path} ({reason}); make it a file you can write, or add the lines yourself",
            EXIT_SETTINGS,
        )


def _new_file_beside(target: Path) -> tuple[int, str]:
    """A new, empty file (mode 0600, O_EXCL) in `target`'s folder: its descriptor and path."""
    return tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
