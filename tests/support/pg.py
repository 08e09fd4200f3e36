"""Access to the PostgreSQL that .ci/run starts: its URL, or a skip (a failure in CI) saying what to install."""

import glob
import os
import shlex
import shutil
import subprocess
import tempfile
from urllib.parse import urlparse

from sqlalchemy import create_engine, text

from conftest import ROOT
from support.needs import unavailable
from support.production import processes


def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    message = (
        "PostgreSQL tests need TEST_DATABASE_URL; run `bash .ci/run` (it installs Debian's postgresql and starts it), "
        "or `apt-get install postgresql` and export TEST_DATABASE_URL=postgresql+psycopg://user@host/db"
    )
    unavailable(message)


def fresh_postgres_url() -> str:
    """The test database, emptied: every table, index and sequence in it is dropped."""
    url = postgres_url()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def database_url_for(backend: str, folder) -> str:
    """A fresh database for a test parametrized over backends: "postgresql" (the emptied test database) or
    "sqlite" (a new file in `folder`)."""
    if backend == "postgresql":
        return fresh_postgres_url()
    return f"sqlite:///{folder / 'calls.db'}"


def postgres_binaries() -> str:
    """Debian's PostgreSQL binaries (the newest version installed), or a skip (a failure in CI) naming the package."""
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    found = sorted(versions, key=lambda path: int(path.split("/")[-2]) if path.split("/")[-2].isdigit() else 0)
    if found:
        return found[-1]
    message = (
        "the PostgreSQL fault test stops a PostgreSQL server of its own and needs Debian's binaries in "
        "/usr/lib/postgresql/*/bin: apt-get install postgresql (bash .ci/run installs it)"
    )
    unavailable(message)


class ThrowawayPostgres:
    """A PostgreSQL server of this test's own (.ci/postgres), which the test may stop and start again."""

    def __init__(self, bindir: str):
        self.bindir = bindir
        # Not under pytest's tmp_path: its folders are private to root, and the server runs as postgres.
        self.folder = tempfile.mkdtemp(prefix="faults-postgres-")
        self.url = ""

    def _as_postgres(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def create(self) -> str:
        env = {key: value for key, value in os.environ.items() if key != "PGPORT_FOR_TESTS"}  # a free port
        result = subprocess.run(
            [str(ROOT / ".ci" / "postgres"), "start", self.folder], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f".ci/postgres start failed: {result.stderr}"
        self.url = result.stdout.strip().splitlines()[-1]
        assert urlparse(self.url).port, self.url
        return self.url

    def stop(self) -> None:
        self._as_postgres(f"{self.bindir}/pg_ctl", "-D", f"{self.folder}/data", "-m", "fast", "-w", "stop")

    def start(self) -> None:
        """Start it again with the options it was first started with (its postmaster.opts)."""
        with open(f"{self.folder}/data/postmaster.opts") as opts:
            arguments = shlex.split(opts.read())[1:]  # after the postgres binary
        data = arguments.index("-D")
        options = shlex.join(arguments[:data] + arguments[data + 2 :])
        data_folder, log = f"{self.folder}/data", f"{self.folder}/log"
        self._as_postgres(f"{self.bindir}/pg_ctl", "-D", data_folder, "-l", log, "-w", "-o", options, "start")

    def processes(self) -> list[int]:
        """The server's processes: its postmaster (postmaster.pid's first line) and every backend it started."""
        with open(f"{self.folder}/data/postmaster.pid") as pid_file:
            postmaster = int(pid_file.readline())
        return [postmaster] + [process.pid for process in processes() if process.parent == postmaster]

    def destroy(self) -> None:
        subprocess.run([str(ROOT / ".ci" / "postgres"), "stop", self.folder], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
