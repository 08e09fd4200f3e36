"""The project's `flask` commands, each imported only when it is run: a worker serving requests imports none."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import os
import sys
from collections.abc import Iterator

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from config import ConfigError, base_url


def running_a_command() -> bool:
    """Whether this process is the `flask` command line (`flask COMMAND` or `python -m flask COMMAND`): its
    standard output is the command's own (a table, JSON for a script), so the server's log goes to stderr."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return (spec is not None and spec.name in ("flask", "flask.__main__")) or os.path.basename(sys.argv[0]) == "flask"


# command name -> "module:attribute" of its click command
COMMANDS = {
    "settings": "commands.cli:settings_command",
    "ncco": "commands.cli:ncco_command",
    "calls": "commands.calls:calls_command",
    "prune": "commands.prune:prune_command",
    "simulate": "commands.simulate:simulate_command",
    "call": "commands.vonage:call_command",
    "token": "commands.vonage:token_command",
    "webhooks": "commands.vonage:webhooks_command",
    "sign": "commands.sign:sign_command",
    "setup": "commands.setup:setup_command",
    "users": "commands.users:users_group",
    "push": "commands.push:push_group",
    "recordings": "commands.recordings:recordings_group",
    "live": "commands.live:live_command",
    "hangup": "commands.live:hangup_command",
    "mute": "commands.live:mute_command",
    "unmute": "commands.live:unmute_command",
    "say": "commands.live:say_command",
    "transfer": "commands.live:transfer_command",
    "forward": "commands.forward:forward_group",
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


class Group(Command, click.Group):
    """A project command group (flask users, flask push): its wrong option or argument is one line too."""


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
        return base_url(value, "http://127.0.0.1:3000")
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


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
        command = super().get_command(ctx, name)
        # Flask's `flask` group asks here last, after its own commands: a name unknown here is unknown to it too,
        # and is one line instead of click's usage block. Completion (resilient parsing) only wants None.
        if command is None and not ctx.resilient_parsing:
            raise _no_such_command(ctx, name)
        return command


def _no_such_command(ctx: click.Context, name: str) -> CommandError:
    """`flask NAME` for an unknown NAME, with the closest command's name when one is close."""
    close = difflib.get_close_matches(name, ctx.command.list_commands(ctx), n=1)
    suggestion = f" (did you mean '{close[0]}'?)" if close else ""
    return CommandError(f"no such command {name!r}{suggestion}; see '{ctx.command_path} --help'", 2)


@contextlib.contextmanager
def settings_end_a_command() -> Iterator[None]:
    """Around the app factory's reading of the settings. Under a `flask` command (a click context is active), a
    bad setting ends the command here: its one `error:` line, exit 2. Anywhere else the ConfigError goes on.

    Flask builds the app to list the commands (for `flask` and `flask --help`) and prints whatever that raises as
    a traceback before the help; a SystemExit is the one thing it lets through, and click exits with it.
    """
    try:
        yield
    except ConfigError as error:
        if click.get_current_context(silent=True) is None:
            raise
        CommandError(str(error)).show()
        raise SystemExit(2) from None


def init_app(app: Flask) -> None:
    app.cli = LazyCommands(COMMANDS)


@click.command("settings", cls=Command)
@with_appcontext
def settings_command():
    """Print the settings the server would start with, by variable, and where each came from."""
    from calllog.token_store import generated_token_file
    from config import VARIABLES, setting_sources

    settings = current_app.config["SETTINGS"]
    described = settings.described()
    sources = setting_sources()
    width = max(len(variable) for variable in VARIABLES)
    for variable, (name, _, _) in VARIABLES.items():
        value, source = described[name], sources.get(variable, "default")
        if value == "None":
            value = "(not set)"
        token_file = generated_token_file(settings) if name == "call_log_token" else None
        if token_file is not None:
            value, source = "(set)", f"generated, kept in {token_file}"
        click.echo(f"{variable:{width}}  {value}  [{source}]")


@click.command("ncco", cls=Command)
@click.argument("number")
@with_appcontext
def ncco_command(number: str):
    """Print the NCCO /voice/answer returns for a call to NUMBER, and why."""
    from dataclasses import replace

    from ncco import CONNECT_WEBHOOK, decide_answer

    settings = current_app.config["SETTINGS"]
    voice = current_app.extensions["voice"]
    plan = voice.plan
    if not plan.event_url:
        # As the answer URL builds it for a request that reached this server at HOST:PORT (PUBLIC_URL unset).
        plan = replace(plan, event_url=f"http://{settings.host}:{settings.port}{CONNECT_WEBHOOK.path}")
    decision = decide_answer({"to": number}, voice.policy, plan, voice.routing)
    if decision.connected:
        click.echo(f"connect: {number} -> {decision.callee}")
    else:
        click.echo(f"refused: {decision.reason}")
    click.echo(json.dumps(decision.ncco, indent=2))
    if not decision.connected:
        raise SystemExit(1)
