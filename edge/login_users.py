"""The users who log in through POST /client/token, as the call log's database keeps them: created at Vonage on a
first login with CLIENT_CREATE_USERS (once: remembered), and when each last had a token (flask users)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from calllog import client_users
from calllog.schema import Database, StorageError
from config import ConfigError, Settings
from identity.refusals import LoginRefused

# How long a login that could not create its user at Vonage is told to wait.
USERS_RETRY_AFTER_SECONDS = 5


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LoginUsers:
    """The users who log in, as the call log's database keeps them: with CLIENT_CREATE_USERS, each is created at
    Vonage on a first login and remembered, so a second login asks Vonage nothing; and when each last had a token.
    The database failing costs a login nothing but that record (and, for a new user, one more Users API call)."""

    def __init__(self, database: Database, log: logging.Logger, create_users: bool, settings: Settings):
        self.database = database
        self.log = log
        self._create: Callable | None = None
        if create_users:
            self._create = _vonage_creator(settings)

    def ensure(self, name: str) -> None:
        """With CLIENT_CREATE_USERS, make sure Vonage has `name`; LoginRefused (503) when it cannot be made now."""
        if self._create is None or self._known(name):
            return
        user, created = self._create(name)
        if created:
            self.log.info("created Vonage user %s (%s) at first login", name, user.id, extra={"user": name})
        self._keep(client_users.remember, name, user.id, _now() if created else None)

    def issued(self, name: str) -> None:
        self._keep(client_users.record_token, name, _now())

    def _known(self, name: str) -> bool:
        try:
            return client_users.is_known(self.database, name)
        except StorageError as error:
            self.log.warning("cannot read the known users (%s): asking Vonage", error)
            return False

    def _keep(self, write: Callable, *values) -> None:
        try:
            write(self.database, *values)
        except StorageError as error:
            self.log.warning("a login's user record was not kept: %s", error, extra={"user": values[0]})


def _vonage_creator(settings: Settings) -> Callable:
    """name -> (the Vonage user, whether it was created now); LoginRefused when Vonage cannot make it just now.

    The SDK and the helper are imported here, once, at start-up: a worker without CLIENT_CREATE_USERS loads neither.
    """
    from vonage_helper.clients import application_client
    from vonage_helper.errors import HelperError
    from vonage_helper.users import ensure_user

    try:
        client = application_client(settings)
    except HelperError as error:
        raise ConfigError(f"CLIENT_CREATE_USERS=on: {error.message}") from None

    def create(name: str):
        try:
            return ensure_user(client, name)
        except HelperError as error:
            raise LoginRefused(
                "users_unavailable",
                f"the user {name!r} is not at Vonage yet and cannot be created just now: {error.message}",
                USERS_RETRY_AFTER_SECONDS,
            ) from None

    return create
