"""Access to the PostgreSQL that .ci/run starts: its URL, or a skip (a failure in CI) saying what to install."""

import os

from sqlalchemy import create_engine, text

from needs import unavailable


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
