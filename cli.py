"""The project's `flask` commands, each imported only when it is run: a worker serving requests imports none."""

from __future__ import annotations

import importlib
import json

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


@click.command("settings")
@with_appcontext
def settings_command():
    """Print the settings the server would start with."""
    for name, value in current_app.config["SETTINGS"].described().items():
        click.echo(f"{name:22} {value}")


@click.command("ncco")
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
