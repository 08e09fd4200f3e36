"""The project's `flask` commands, each imported only when it is run: a worker serving requests imports none."""

from __future__ import annotations

import importlib
import json
from urllib.parse import urlsplit

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

# command name -> "module:attribute" of its click command
COMMANDS = {
    "settings": "cli:settings_command",
    "ncco": "cli:ncco_command",
    "calls": "calllog.api:calls_command",
    "prune": "calllog.retention_command:prune_command",
    "simulate": "simulate:simulate_command",
    "call": "vonage_helper.commands:call_command",
    "token": "vonage_helper.commands:token_command",
    "webhooks": "vonage_helper.commands:webhooks_command",
    "sign": "vonage_helper.sign:sign_command",
}


class CommandError(click.ClickException):
    """A command's failure: one line on standard error, `error: ...`, like the server's own, and a non-zero exit."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


class Command(click.Command):
    """Every project command's class: a wrong option or argument is one line naming the problem and where the help
    is, instead of click's usage block, hint and blank line; the exit code stays click's 2."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise _one_line(error) from None


def _one_line(error: click.UsageError) -> CommandError:
    message = error.format_message().rstrip(".")
    message = message[:1].lower() + message[1:]
    if error.ctx is not None:
        message += f"; see '{error.ctx.command_path} --help'"
    return CommandError(message, error.exit_code)


def check_base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Check a --url option: the base URL of an HTTP server, such as http://127.0.0.1:3000."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise click.BadParameter(f"{value!r} is not a base URL such as http://127.0.0.1:3000")
    return value


class LazyCommands(AppGroup):
    """Flask's command group, with commands that are imported when they are first looked up.

    This is click's documented way to load subcommands lazily (a group's list_commands and get_command).
    """

    def __init__(self, lazy: dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, attribute = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


def init_app(app: Flask) -> None:
    app.cli = LazyCommands(COMMANDS)


@click.command("settings", cls=Command)
@with_appcontext
def settings_command():
    """Print the settings the server would start with."""
    for name, value in current_app.config["SETTINGS"].described().items():
        click.echo(f"{name:22} {value}")


@click.command("ncco", cls=Command)
@click.argument("number")
@with_appcontext
def ncco_command(number: str):
    """Print the NCCO /voice/answer returns for a call to NUMBER, and why."""
    from ncco import decide_answer

    settings = current_app.config["SETTINGS"]
    decision = decide_answer({"to": number}, settings.destination_policy, settings.call_plan, settings.call_routing)
    if decision.connected:
        click.echo(f"connect: {number} -> {decision.callee}")
    else:
        click.echo(f"refused: {decision.reason}")
    click.echo(json.dumps(decision.ncco, indent=2))
    if not decision.connected:
        raise SystemExit(1)
