"""Vonage's Users API, through the SDK's users package: listing, creating and deleting a Client SDK application's
users, making the users the routing settings name (`flask users sync`), and creating one as it first logs in.

Every failure is a HelperError, one line: 401 (the key is not the application's), 404, 409 (the name is taken),
429 (with the wait Vonage asks for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import requests
from vonage import Vonage
from vonage_http_client import HttpRequestError, NotFoundError, RateLimitedError
from vonage_users import ListUsersFilter, User

from config import Settings, valid_user_name
from ncco import ANY_USER
from vonage_helper.clients import explain
from vonage_helper.errors import EXIT_NOT_FOUND, EXIT_OTHER, EXIT_RATE_LIMITED, EXIT_SETTINGS, HelperError

PAGE_SIZE = 100


class UserExists(HelperError):
    """Vonage already has a user of that name (409)."""


@dataclass(frozen=True)
class VonageUser:
    name: str
    id: str
    display_name: str | None = None


def users_error(error: Exception, name: str | None = None) -> HelperError:
    """One line for a failure of the Users API; `name` is the user the request was about, if one."""
    if isinstance(error, HttpRequestError) and error.response.status_code == 409:
        return UserExists(f"Vonage already has a user named {name!r} (409 conflict)", EXIT_OTHER)
    if isinstance(error, NotFoundError) and name is not None:
        return HelperError(f"Vonage has no user named {name!r} (404); flask users lists them", EXIT_NOT_FOUND)
    if isinstance(error, RateLimitedError):
        wait = error.response.headers.get("Retry-After")
        after = f"try again in {wait} s" if wait and wait.isdigit() else "wait a moment and try again"
        return HelperError(f"Vonage is rate limiting this account (429): {after}", EXIT_RATE_LIMITED)
    return explain(error, "application")


def _calling(action: Callable, name: str | None = None):
    try:
        return action()
    except (HttpRequestError, requests.RequestException) as error:
        raise users_error(error, name) from None


def checked_name(name: str) -> str:
    try:
        return valid_user_name(name)
    except ValueError as problem:
        raise HelperError(
            f"{name!r} is not a user name Vonage and this server take: {problem}", EXIT_SETTINGS
        ) from None


def list_users(client: Vonage, name: str | None = None) -> list[VonageUser]:
    """Every user of the application (or the one named `name`), page after page."""
    found, cursor = [], None
    while True:
        page_filter = ListUsersFilter(page_size=PAGE_SIZE, cursor=cursor, name=name)
        page, cursor = _calling(lambda page_filter=page_filter: client.users.list_users(page_filter))
        found += [VonageUser(user.name, user.id, user.display_name) for user in page if user.name and user.id]
        if cursor is None:
            return found


def find_user(client: Vonage, name: str) -> VonageUser | None:
    return next((user for user in list_users(client, name) if user.name == name), None)


def create_user(client: Vonage, name: str, display_name: str | None = None) -> VonageUser:
    """Create `name` at Vonage; HelperError (409) if it exists."""
    made = _calling(lambda: client.users.create_user(User(name=checked_name(name), display_name=display_name)), name)
    return VonageUser(made.name or name, made.id or "", made.display_name)


def delete_user(client: Vonage, name: str) -> VonageUser:
    """Delete the user named `name`; HelperError (404) if there is none."""
    user = find_user(client, name)
    if user is None:
        raise HelperError(f"Vonage has no user named {name!r}; flask users lists them", EXIT_NOT_FOUND)
    _calling(lambda: client.users.delete_user(user.id), name)
    return user


def routed_names(settings: Settings) -> list[str]:
    """The users the routing settings name: INBOUND_ROUTES, INBOUND_DEFAULT_USER and CALLABLE_USERS (not '*')."""
    names = [user for _, user in settings.inbound_routes]
    if settings.inbound_default_user:
        names.append(settings.inbound_default_user)
    names += sorted(settings.callable_users - {ANY_USER})
    return list(dict.fromkeys(names))


def sync_users(settings: Settings, client: Vonage, dry_run: bool) -> list[str]:
    """Create every user the routing settings name that Vonage does not have; list, never delete, the others."""
    wanted = routed_names(settings)
    if not wanted:
        return ["no user to make: INBOUND_ROUTES, INBOUND_DEFAULT_USER and CALLABLE_USERS name none"]
    existing = {user.name: user for user in list_users(client)}
    lines = []
    for name in wanted:
        if name in existing:
            lines.append(f"exists        {name} ({existing[name].id})")
        elif dry_run:
            lines.append(f"would create  {name}")
        else:
            lines.append(f"created       {name} ({create_user(client, name).id})")
    if ANY_USER in settings.callable_users:
        return lines
    for name in sorted(set(existing) - set(wanted)):
        lines.append(f"not routed    {name} ({existing[name].id}): no setting names it; kept (flask users delete)")
    return lines


def ensure_user(client: Vonage, name: str) -> tuple[VonageUser, bool]:
    """The user `name`, created if Vonage does not have it; whether it was created now."""
    try:
        return create_user(client, name), True
    except UserExists:
        pass
    existing = find_user(client, name)
    if existing is None:
        raise HelperError(f"Vonage said {name!r} exists (409) but does not list it", EXIT_OTHER)
    return existing, False
