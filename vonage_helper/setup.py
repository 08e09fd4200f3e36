"""`flask setup`: from the account's API key and secret to an application this server answers for, in one command.

A new project: a key pair made here, an application created with its public half (voice: the answer, event and
fallback URLs of this server, signed callbacks), the private half saved in ./private.key (0600), the two settings
written into .env, and with --number one of the account's numbers linked. A project that is set up already: it is
checked (the key loads and belongs to the application, which exists and calls this server) and nothing changes.

The voice capability is what the Client SDK's in-app calls need; the rtc capability would send Conversation API
events (member:joined and the like), which this server does not take, so it is not asked for (docs/cli.md).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from vonage import Vonage
from vonage_application import ApplicationConfig, ApplicationData, Capabilities, Keys, Voice, VoiceUrl, VoiceWebhooks
from vonage_numbers import OwnedNumber

from config import ENV_FILE, ConfigError, Settings, settings_from
from policy import NumberError, normalize_number
from vonage_helper.clients import private_key_pem
from vonage_helper.env_file import EnvFile
from vonage_helper.errors import EXIT_NOT_FOUND, EXIT_OTHER, EXIT_SETTINGS, HelperError
from vonage_helper.key_pair import is_public_half, key_file_written, new_key_pair
from vonage_helper.numbers import link_number, owned_number
from vonage_helper.webhooks import (
    ROUTES,
    Application,
    applications_api,
    describe,
    pointed_base,
    server_webhooks,
    voice_webhooks,
)

KEY_FILE = "private.key"
DEFAULT_NAME = "Vonage voice webhook server"
# Set up, but the application calls another server: a state to act on, not a failure of Vonage or of a setting.
EXIT_ELSEWHERE = 1


def set_up(
    settings: Settings, client: Vonage, folder: Path, base: str, name: str, number: str | None, force: bool
) -> list[str]:
    """Set the project in `folder` up for an application whose webhooks are this server's under `base`, or check
    that it is; returns what was done, a line each. Raises HelperError."""
    digits = _number_digits(number, settings) if number else None
    wanted = server_webhooks(base, dict.fromkeys(ROUTES))
    if settings.application_id and not force:
        return _check_set_up(settings, client, base, wanted, digits)
    env = EnvFile(folder / ENV_FILE)
    key_path = folder / KEY_FILE
    if not force:
        for variable in ("VONAGE_APPLICATION_ID", "VONAGE_PRIVATE_KEY"):
            if env.value(variable):
                raise HelperError(
                    f"{env.path} already sets {variable}, perhaps for an application of its own, so it is kept; "
                    "flask setup --force replaces it with a new application's",
                    EXIT_SETTINGS,
                )
    env.check_writable()
    # Before anything is created: a number the account does not own stops here, with nothing to undo. (An existing
    # key file stops it at key_file_written, before the application is created.)
    owned = owned_number(client, digits) if digits else None
    private_pem, public_pem = new_key_pair()
    with key_file_written(key_path, private_pem, replace=force):
        created = create_application(client, name, wanted, public_pem)
    lines = [f"created application {created.id} ({created.name}): voice, with signed callbacks"]
    lines += [f"  {route:20} {describe(wanted[route])}" for route in ROUTES]
    lines.append(f"saved its private key in ./{KEY_FILE} (mode 0600; the key pair was made on this machine)")
    lines += _write_env(env, created.id, settings)
    if settings.application_id and settings.application_id != created.id:
        lines.append(f"the earlier application {settings.application_id} is left as it is (delete it in the dashboard)")
    if owned is not None:
        lines.append(_link(client, owned, created.id, f"flask setup --number {digits}"))
    lines.append("next: make run, and flask token Alice for a Client SDK login token")
    return lines


def create_application(client: Vonage, name: str, webhooks: dict[str, dict], public_pem: str) -> ApplicationData:
    """POST /v2/applications: voice with these webhooks and signed callbacks, and this public key."""
    config = ApplicationConfig(
        name=name,
        capabilities=Capabilities(
            voice=Voice(
                webhooks=VoiceWebhooks(**{route: VoiceUrl(**setting) for route, setting in webhooks.items()}),
                signed_callbacks=True,
            )
        ),
        keys=Keys(public_key=public_pem),
    )
    answer = applications_api(client, "post", "/v2/applications", config.model_dump(exclude_none=True))
    look = f"look for an application named {name!r} in the dashboard before trying again"
    try:
        created = ApplicationData.model_validate(answer)
        settings_from({"VONAGE_APPLICATION_ID": created.id})
    except (ValidationError, ConfigError) as error:
        detail = str(error).splitlines()[0]
        raise HelperError(
            f"Vonage's answer to creating the application was not one ({detail}); {look}", EXIT_OTHER
        ) from None
    return created


def _check_set_up(
    settings: Settings, client: Vonage, base: str, wanted: dict[str, dict], digits: str | None
) -> list[str]:
    """The project names an application: check it is this server's, changing nothing (but linking a number)."""
    private_pem = private_key_pem(settings.private_key)
    application = Application(settings, client)
    try:
        current = application.read()
    except HelperError as error:
        if error.exit_code != EXIT_NOT_FOUND:
            raise
        raise HelperError(
            f"application {application.id} (VONAGE_APPLICATION_ID) is not one of this account's (404): check that "
            "VONAGE_API_KEY is the account that owns it, or run flask setup --force to create a new one",
            EXIT_NOT_FOUND,
        ) from None
    if not isinstance(current, dict) or current.get("id") != application.id:
        raise HelperError(
            f"Vonage's answer for application {application.id} was not that application; try again shortly",
            EXIT_OTHER,
        )
    _check_key(application.id, private_pem, current)
    webhooks = voice_webhooks(current)
    different = [route for route in ROUTES if _target(webhooks[route]) != _target(wanted[route])]
    if different:
        elsewhere = pointed_base(webhooks)
        if elsewhere and len(different) == len(ROUTES):
            now = f"it calls {elsewhere}"
        else:
            now = ", ".join(f"{route} is {describe(webhooks[route])}" for route in different)
        raise HelperError(
            f"application {application.id} is set up, but does not call this server at {base} ({now}): "
            f"flask webhooks {base} points it here (and keeps the earlier webhooks for flask webhooks --restore); "
            "flask setup --force creates a new application instead",
            EXIT_ELSEWHERE,
        )
    summary = f"application {application.id} ({current.get('name') or 'no name'}) for {base}"
    if digits is None:
        return [f"already set up: {summary}; nothing changed"]
    number = owned_number(client, digits)
    if number.app_id == application.id:
        return [f"already set up: {summary}, with {digits} linked to it; nothing changed"]
    return [f"already set up: {summary}", _link(client, number, application.id, f"flask setup --number {digits}")]


def _check_key(application_id: str, private_pem: str, application: dict) -> None:
    """Refuse a VONAGE_PRIVATE_KEY that is not the application's: every JWT it signed would be refused with 401."""
    public_pem = (application.get("keys") or {}).get("public_key")
    if public_pem and not is_public_half(private_pem, public_pem):
        raise HelperError(
            f"VONAGE_PRIVATE_KEY is not the key of application {application_id}: its public key is another's; "
            "download the application's private.key from the dashboard, or run flask setup --force to create a "
            "new application with a new key",
            EXIT_SETTINGS,
        )


def _target(setting: dict | None) -> tuple[str | None, str | None]:
    setting = setting or {}
    return setting.get("address"), setting.get("http_method")


def _write_env(env: EnvFile, application_id: str, settings: Settings) -> list[str]:
    values = {"VONAGE_APPLICATION_ID": application_id, "VONAGE_PRIVATE_KEY": f"./{KEY_FILE}"}
    earlier = env.value("VONAGE_APPLICATION_ID")
    try:
        env.set(values)
    except HelperError as error:
        lines = " and ".join(f"{name}={value}" for name, value in values.items())
        raise HelperError(
            f"application {application_id} was created and its key saved in ./{KEY_FILE}, but {error.message}: "
            f"add {lines} to it",
            error.exit_code,
        ) from None
    lines = [f"wrote VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY into {env.path}"]
    if settings.application_id and settings.application_id != earlier:
        # Flask loads .env under the environment, never over it.
        lines.append("note: VONAGE_APPLICATION_ID is also set in the environment, which wins over .env: unset it")
    return lines


def _link(client: Vonage, number: OwnedNumber, application_id: str, again: str) -> str:
    try:
        link_number(client, number, application_id)
    except HelperError as error:
        raise HelperError(
            f"application {application_id} is set up, but {number.msisdn} was not linked to it: {error.message}; "
            f"{again} tries again",
            error.exit_code,
        ) from None
    earlier = f" (it was linked to application {number.app_id})" if number.app_id else ""
    return f"linked {number.msisdn} ({number.country}) to application {application_id}{earlier}"


def _number_digits(number: str, settings: Settings) -> str:
    try:
        return normalize_number(number, settings.default_region)
    except NumberError as error:
        raise HelperError(f"--number: {error.detail}", EXIT_SETTINGS) from None
