"""Every `tether` command has help with an example, and a docs/cli.md section with its options."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from common.cli import cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
# Documented once, at the top of docs/cli.md, rather than in every section.
SHARED_OPTIONS = {
    "--help",
    "--url",
    "--token",
    "--json",
    "--ca-file",
    "--client-cert",
    "--client-key",
}
NOT_BUILT_YET = {"agent"}  # its module comes with the agent's issue; checked once it imports


def walk(group: click.Group, ctx: click.Context, path: str) -> Iterator[tuple[str, click.Command]]:
    """Yield every command under `group` by its full name, loading lazy subcommands."""
    for name in group.list_commands(ctx):
        try:
            command = group.get_command(ctx, name)
        except ImportError:
            if name in NOT_BUILT_YET:
                continue
            raise
        assert command is not None, name
        full = f"{path} {name}"
        yield full, command
        if isinstance(command, click.Group):
            yield from walk(command, click.Context(command, parent=ctx, info_name=name), full)


COMMANDS = dict(walk(cli, click.Context(cli, info_name="tether"), "tether"))


def section(text: str, title: str) -> str | None:
    """Return the part of the markdown under the heading titled `title`, up to the next heading."""
    match = re.search(rf"^(#+) `?{re.escape(title)}`?\s*$", text, re.MULTILINE)
    if match is None:
        return None
    rest = text[match.end() :]
    following = re.search(r"^#+ ", rest, re.MULTILINE)
    return rest[: following.start()] if following else rest


def test_the_operator_commands_are_all_there():
    expected = {
        "tether model push",
        "tether model list",
        "tether model show",
        "tether env create",
        "tether env set",
        "tether env unset",
        "tether env show",
        "tether env history",
        "tether env promote",
        "tether env rollback",
        "tether env list",
        "tether token create",
        "tether status",
        "tether server",
    }
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_has_help_with_an_example(path):
    command = COMMANDS[path]
    assert command.help and command.help.strip(), f"{path} has no help"
    assert "Example" in command.help, f"{path}'s help has no example"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{path} {param.opts[0]} has no help"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_is_documented_with_its_options(path):
    text = DOCS.read_text(encoding="utf-8")
    body = section(text, path)
    assert body is not None, f"docs/cli.md has no heading for `{path}`"
    # Options shared by a group's commands may be documented once, in the group's section.
    words = path.split()
    documented = body + "".join(
        section(text, " ".join(words[:n])) or "" for n in range(2, len(words))
    )
    for param in COMMANDS[path].params:
        if isinstance(param, click.Option):
            name = max(param.opts, key=len)
            if name not in SHARED_OPTIONS:
                assert name in documented, f"docs/cli.md's `{path}` section does not name {name}"
