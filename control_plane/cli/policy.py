"""`tether policy`: when an environment promotes, rolls back and alerts on drift."""

from __future__ import annotations

import json
from pathlib import Path

import click

from common.cli_options import json_option
from control_plane.cli.client import OperatorClient
from control_plane.cli.options import name_argument, with_client
from control_plane.cli.output import echo_json


@click.group()
def policy() -> None:
    """Set and show an environment's promotion, rollback and drift-alert rules.

    \b
    Example:
      tether policy set production policy.json
    """


@policy.command(name="set")
@name_argument("environment", "environment name", "ENV")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@with_client
def set_policy(client: OperatorClient, environment: str, file: Path, as_json: bool) -> None:
    """Replace ENV's policy with the JSON document in FILE (see docs/shadow-and-drift.md).

    \b
    Example:
      echo '{"promote": {"auto": true, "min_samples": 500}}' > policy.json
      tether policy set production policy.json
    """
    try:
        document = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"{file} is not valid JSON: {error}", param_hint="FILE") from None
    if not isinstance(document, dict):
        raise click.BadParameter(f"{file} must hold a JSON object", param_hint="FILE")
    stored = client.set_policy(environment, document)
    if as_json:
        echo_json(stored)
        return
    rules = [name for name in ("promote", "rollback", "drift") if getattr(stored, name)]
    click.echo(f"Policy of {environment} set: {', '.join(rules) or 'no rules (all off)'}.")


@policy.command(name="show")
@name_argument("environment", "environment name", "ENV")
@json_option
@with_client
def show_policy(client: OperatorClient, environment: str, as_json: bool) -> None:
    """Show ENV's policy; webhook secrets are masked.

    \b
    Example:
      tether policy show production
    """
    found = client.show_policy(environment)
    if as_json:
        echo_json(found)
        return
    click.echo(json.dumps(found.model_dump(mode="json", exclude_none=True), indent=2))
