"""The Client SDK users this server has seen: which it created at Vonage (CLIENT_CREATE_USERS), and when it last
issued each a login token (`flask users`).

Written from the login route's thread, one small transaction a login, not through the call-log writer: a login is
rare beside webhooks, and waits for its row anyway.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from calllog.schema import Database, client_users


def is_known(database: Database, name: str) -> bool:
    """Whether `name` was created at Vonage by this server, or found there, before."""
    with database.connect() as connection:
        row = connection.execute(select(client_users.c.vonage_id).where(client_users.c.name == name)).first()
    return row is not None and row.vonage_id is not None


def remember(database: Database, name: str, vonage_id: str, created_at: str | None) -> None:
    """Keep that `name` exists at Vonage as `vonage_id` (`created_at`: when this server made it, or None)."""
    values = {"name": name, "vonage_id": vonage_id, "created_at": created_at}
    with database.connect(writing=True) as connection:
        insert = (postgresql if connection.dialect.name == "postgresql" else sqlite).insert(client_users)
        changed = {"vonage_id": vonage_id} if created_at is None else {"vonage_id": vonage_id, "created_at": created_at}
        connection.execute(insert.values(**values).on_conflict_do_update(index_elements=["name"], set_=changed))


def record_token(database: Database, name: str, issued_at: str) -> None:
    """Keep when `name` was last issued a login token here."""
    with database.connect(writing=True) as connection:
        done = connection.execute(
            update(client_users).where(client_users.c.name == name).values(last_token_at=issued_at)
        )
        if done.rowcount == 0:
            connection.execute(client_users.insert().values(name=name, last_token_at=issued_at))


def last_tokens(database: Database) -> dict[str, str]:
    """name -> when its last login token was issued here, for every user that has had one."""
    with database.connect() as connection:
        rows = connection.execute(
            select(client_users.c.name, client_users.c.last_token_at).where(client_users.c.last_token_at.is_not(None))
        )
        return {row.name: row.last_token_at for row in rows}


def forget(database: Database, name: str) -> None:
    """`name` is no longer at Vonage (flask users delete)."""
    with database.connect(writing=True) as connection:
        connection.execute(client_users.delete().where(client_users.c.name == name))
