"""The `tether` command: one click group whose subcommands load only when used.

Subcommands live beside the code they drive (`control_plane.cli.*`, `agent.cli`), named here by
import path, so the control plane and the agent never import each other and `tether --help`
stays fast.
"""

from __future__ import annotations

import importlib

import click

from common.version import package_version

SUBCOMMANDS = {
    "server": "control_plane.cli.server:server",
    "model": "control_plane.cli.model:model",
    "env": "control_plane.cli.env:env",
    "token": "control_plane.cli.token:token",
    "status": "control_plane.cli.env:status",
    "reports": "control_plane.cli.reports:reports",
    "events": "control_plane.cli.reports:events",
    "policy": "control_plane.cli.policy:policy",
    "key": "control_plane.cli.key:key",
    "bundle": "control_plane.cli.bundle:bundle",
    "agent": "agent.cli:agent",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, _, attribute = self.lazy[cmd_name].partition(":")
            return getattr(importlib.import_module(module_name), attribute)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    lazy=SUBCOMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_version(), "--version", prog_name="tether")
def cli() -> None:
    """Tether: pull-based delivery of ML models to fleets of serving hosts.

    Operators register versions and set the desired state per environment; agents on each
    serving host pull, verify, serve and report back.
    """
