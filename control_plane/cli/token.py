"""`tether token`: create API tokens for operators, dashboards and enrolling agents."""

from __future__ import annotations

import click

from control_plane.cli.client import OperatorClient
from control_plane.cli.options import json_option, name_check, with_client
from control_plane.cli.output import echo_json, when


@click.group()
def token() -> None:
    """Create API tokens.

    \b
    Example:
      tether token create --role enrollment --env production --max-uses 10
    """


@token.command()
@click.option(
    "--role",
    required=True,
    type=click.Choice(["admin", "viewer", "enrollment"]),
    help="admin: everything; viewer: read only; enrollment: enrolls agents into --env.",
)
@click.option(
    "--env",
    "environment",
    callback=name_check("environment name"),
    metavar="ENV",
    help="The environment an enrollment token enrolls agents into (required for it).",
)
@click.option(
    "--expires-in",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Seconds until the token stops working [never].",
)
@click.option(
    "--max-uses",
    type=click.IntRange(min=1),
    metavar="N",
    help="Enrollment tokens: how many agents may enroll with it [unlimited].",
)
@click.option("--description", default="", help="What or who the token is for.")
@json_option
@with_client
def create(
    client: OperatorClient,
    role: str,
    environment: str | None,
    expires_in: int | None,
    max_uses: int | None,
    description: str,
    as_json: bool,
) -> None:
    """Create a token and print its secret, which is shown only this once.

    The secret alone goes to standard output and the rest to standard error, so
    TOKEN=$(tether token create --role viewer) works.

    \b
    Examples:
      tether token create --role viewer --description "grafana" --expires-in 2592000
      tether token create --role enrollment --env production --max-uses 10
    """
    created = client.create_token(
        role,
        environment=environment,
        expires_in=expires_in,
        max_uses=max_uses,
        description=description,
    )
    if as_json:
        echo_json(created)
        return
    facts = [f"environment {created.environment}"] if created.environment else []
    facts.append(f"expires {when(created.expires_at)}" if created.expires_at else "no expiry")
    if created.uses_left is not None:
        facts.append(f"{created.uses_left} use(s)")
    click.echo(f"Created {created.role.value} token {created.id} ({', '.join(facts)}).", err=True)
    click.echo(created.token)
    click.echo("Keep it now: only its hash is stored, it cannot be shown again.", err=True)
