"""`tether token`: create, list and revoke API tokens for operators, dashboards and agents."""

from __future__ import annotations

import click

from common.cli_options import json_option
from common.display import when
from control_plane.cli.client import OperatorClient
from control_plane.cli.options import name_check, with_client
from control_plane.cli.output import echo_json, echo_table


@click.group()
def token() -> None:
    """Create, list and revoke API tokens.

    \b
    Examples:
      tether token create --role enrollment --env production --max-uses 10
      tether token list
      tether token revoke tok_0123456789abcdef
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


@token.command(name="list")
@json_option
@with_client
def list_tokens(client: OperatorClient, as_json: bool) -> None:
    """List the tokens that work, agents' included (never their secrets).

    \b
    Example:
      tether token list
    """
    found = client.list_tokens()
    if as_json:
        echo_json(found)
        return
    echo_table(
        ["id", "role", "scope", "expires", "uses left", "created", "description"],
        [
            [
                t.id,
                t.role.value,
                t.agent_id or t.environment or "-",
                when(t.expires_at) if t.expires_at else "never",
                "-" if t.uses_left is None else t.uses_left,
                when(t.created_at),
                t.description,
            ]
            for t in found.tokens
        ],
        empty="No tokens.",
    )


@token.command()
@click.argument("token_id", metavar="TOKEN_ID")
@json_option
@with_client
def revoke(client: OperatorClient, token_id: str, as_json: bool) -> None:
    """Revoke TOKEN_ID (from `tether token list`): it stops working at once.

    Revoking an agent's token cuts that agent off: it keeps serving what it has, and
    needs a new enrollment to poll again. The last working admin token cannot be revoked.

    \b
    Example:
      tether token revoke tok_0123456789abcdef
    """
    revoked = client.revoke_token(token_id)
    if as_json:
        echo_json(revoked)
        return
    scope = revoked.agent_id or revoked.environment
    click.echo(
        f"Revoked {revoked.role.value} token {revoked.id}" + (f" ({scope})." if scope else ".")
    )
