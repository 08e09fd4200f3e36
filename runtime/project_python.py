"""The wrong shell: a `flask` command or serve.py run by a Python without the project's packages (the .venv not
activated) says so in one line with the fix, instead of a traceback about the first module it lacks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# The server's own packages: a Python without one of them is not the project's .venv.
PACKAGES = ("flask", "sqlalchemy", "prometheus_client", "phonenumbers", "dotenv", "granian")
PROJECT_VENV = Path(__file__).resolve().parent.parent / ".venv"


def missing_packages() -> list[str]:
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


def require_project_python() -> None:
    """Exit with one line when this Python lacks the server's packages; nothing otherwise."""
    missing = missing_packages()
    if not missing:
        return
    if PROJECT_VENV.is_dir():
        fix = "run `source .venv/bin/activate` in this shell first (or call .venv/bin/flask, .venv/bin/python)"
    else:
        fix = "run `make install` (it builds .venv with them), then `source .venv/bin/activate`"
    print(
        f"error: this shell's Python ({sys.executable}) lacks the server's packages ({', '.join(missing)}): {fix}",
        file=sys.stderr,
    )
    raise SystemExit(2)
