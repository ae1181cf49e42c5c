"""`tether env` and `tether status`: environments, their desired state, history and fleet."""

from __future__ import annotations

import click

from common.cli_options import json_option
from common.display import ago, when
from common.schemas import (
    AGENT_STATES,
    ActualModel,
    AgentModelStatus,
    DesiredModel,
    DesiredState,
    EnvironmentStatus,
    ModelStatus,
)
from control_plane.cli.client import OperatorClient
from control_plane.cli.options import (
    if_match_option,
    name_argument,
    reason_option,
    with_client,
)
from control_plane.cli.output import echo_json, echo_table, version_label


@click.group()
def env() -> None:
    """Create environments and change which model versions they should run.

    \b
    Example:
      tether env set production wine 3 --shadow 4 --reason "try v4 on live traffic"
    """


@env.command()
@name_argument("environment", "environment name", "ENV")
@click.option("--description", default=None, help="What this environment is for.")
@json_option
@with_client
def create(
    client: OperatorClient, environment: str, description: str | None, as_json: bool
) -> None:
    """Create environment ENV (nothing changes if it already exists).

    \b
    Example:
      tether env create staging --description "pre-production, 2 hosts"
    """
    found, created = client.create_environment(environment, description)
    if as_json:
        echo_json(found)
    elif created:
        click.echo(f"Created environment {found.name} (revision {found.revision}).")
    else:
        click.echo(f"Environment {found.name} already exists (revision {found.revision}).")


@env.command(name="list")
@json_option
@with_client
def list_environments(client: OperatorClient, as_json: bool) -> None:
    """List environments with their revisions.

    \b
    Example:
      tether env list
    """
    found = client.list_environments()
    if as_json:
        echo_json(found)
        return
    echo_table(
        ["environment", "revision", "updated", "description"],
        [[e.name, e.revision, when(e.updated_at), e.description] for e in found.environments],
        empty="No environments yet: create one with `tether env create ENV`.",
    )


@env.command()
@name_argument("environment", "environment name", "ENV")
@json_option
@with_client
def show(client: OperatorClient, environment: str, as_json: bool) -> None:
    """Show the desired state of ENV: each model's version and shadow.

    \b
    Example:
      tether env show production
    """
    state = client.desired(environment)
    if as_json:
        echo_json(state)
        return
    click.echo(f"Environment {state.environment}, revision {state.revision}\n")
    echo_table(
        ["model", "version", "shadow"],
        [
            [name, version_label(entry.version), version_label(entry.shadow)]
            for name, entry in sorted(state.models.items())
        ],
        empty="No models deployed: use `tether env set ENV MODEL VERSION`.",
    )


@env.command(name="set")
@name_argument("environment", "environment name", "ENV")
@name_argument("model_name", "model name", "MODEL")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "--shadow",
    type=click.IntRange(min=1),
    metavar="VERSION",
    help="A candidate version to run beside VERSION on the same live inputs.",
)
@reason_option
@if_match_option
@json_option
@with_client
def set_desired(
    client: OperatorClient,
    environment: str,
    model_name: str,
    version: int,
    shadow: int | None,
    reason: str,
    if_match: int | None,
    as_json: bool,
) -> None:
    """Make MODEL run VERSION in ENV, optionally with a --shadow candidate beside it.

    \b
    Example:
      tether env set production wine 3 --shadow 4 --reason "try v4" --if-match 7
    """
    state = client.set_desired(
        environment, model_name, version, shadow, reason=reason, if_match=if_match
    )
    _echo_change(state, model_name, "Set", as_json)


@env.command()
@name_argument("environment", "environment name", "ENV")
@name_argument("model_name", "model name", "MODEL")
@reason_option
@if_match_option
@json_option
@with_client
def unset(
    client: OperatorClient,
    environment: str,
    model_name: str,
    reason: str,
    if_match: int | None,
    as_json: bool,
) -> None:
    """Stop deploying MODEL in ENV.

    \b
    Example:
      tether env unset staging wine --reason "retired"
    """
    state = client.unset_desired(environment, model_name, reason=reason, if_match=if_match)
    _echo_change(state, model_name, "Unset", as_json)


@env.command()
@name_argument("environment", "environment name", "ENV")
@name_argument("model_name", "model name", "MODEL")
@reason_option
@if_match_option
@json_option
@with_client
def promote(
    client: OperatorClient,
    environment: str,
    model_name: str,
    reason: str,
    if_match: int | None,
    as_json: bool,
) -> None:
    """Make MODEL's shadow version its primary in ENV (the old primary is kept for rollback).

    \b
    Example:
      tether env promote production wine --reason "v4 agrees 99.2% with v3"
    """
    state = client.promote(environment, model_name, reason=reason, if_match=if_match)
    _echo_change(state, model_name, "Promoted", as_json)


@env.command()
@name_argument("environment", "environment name", "ENV")
@name_argument("model_name", "model name", "MODEL")
@reason_option
@if_match_option
@json_option
@with_client
def rollback(
    client: OperatorClient,
    environment: str,
    model_name: str,
    reason: str,
    if_match: int | None,
    as_json: bool,
) -> None:
    """Put MODEL's previous primary version back in ENV, dropping any shadow.

    \b
    Example:
      tether env rollback production wine --reason "accuracy fell"
    """
    state = client.rollback(environment, model_name, reason=reason, if_match=if_match)
    _echo_change(state, model_name, "Rolled back", as_json)


@env.command()
@name_argument("environment", "environment name", "ENV")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="How many entries, newest first.",
)
@json_option
@with_client
def history(client: OperatorClient, environment: str, limit: int, as_json: bool) -> None:
    """Show the audit log of ENV's desired state: who changed what, when and why.

    \b
    Example:
      tether env history production --limit 20
    """
    found = client.history(environment, limit)
    if as_json:
        echo_json(found)
        return
    echo_table(
        ["revision", "at", "actor", "action", "model", "before", "after", "reason"],
        [
            [
                e.revision,
                when(e.at),
                e.actor,
                e.action,
                e.model,
                _entry(e.before),
                _entry(e.after),
                e.reason,
            ]
            for e in found.entries
        ],
        empty=f"No changes to {environment} yet.",
    )


@click.command()
@name_argument("environment", "environment name", "ENV")
@click.option(
    "--state",
    type=click.Choice(AGENT_STATES),
    help="Only the agents in this state.",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Agents to skip [0].")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, help="Agents to show, 1-1000 [100]."
)
@json_option
@with_client
def status(
    client: OperatorClient,
    environment: str,
    state: str | None,
    offset: int,
    limit: int,
    as_json: bool,
) -> None:
    """Count the agents of ENV by state and show a page of them, the ones that need a look first.

    Failed agents come first, then stale (not heard from), lagging and converged ones.

    \b
    Example:
      tether status production
      tether status production --state failed
      tether status production --offset 100
    """
    report = client.status(environment, state=state, offset=offset, limit=limit)
    if as_json:
        echo_json(report)
        return
    _echo_status(report)


def _entry(entry: DesiredModel | None) -> str:
    if entry is None:
        return "-"
    shadow = f" (shadow {version_label(entry.shadow)})" if entry.shadow is not None else ""
    return version_label(entry.version) + shadow


def _echo_change(state: DesiredState, model_name: str, verb: str, as_json: bool) -> None:
    if as_json:
        echo_json(state)
        return
    entry = state.models.get(model_name)
    now = _entry(entry) if entry is not None else "not deployed"
    click.echo(f"{verb} {model_name} in {state.environment}: now {now}, revision {state.revision}.")


def _echo_status(report: EnvironmentStatus) -> None:
    counts = report.counts
    click.echo(
        f"Environment {report.environment}, revision {report.revision}: "
        f"{report.converged}/{report.total} agent(s) converged"
        + (
            f" ({counts.failed} failed, {counts.stale} stale, {counts.lagging} lagging)"
            if report.total > report.converged
            else ""
        )
        + "\n"
    )
    rows = []
    for agent in report.agents:
        state = "stale" if agent.stale else "converged" if agent.converged else "converging"
        seen = [agent.agent_id, agent.hostname, ago(agent.last_seen), agent.applied_revision]
        if not agent.models:
            rows.append([*seen, "-", "-", "-", state])
        for name, model in sorted(agent.models.items()):
            rows.append(
                [
                    *seen,
                    name,
                    _entry(model.desired),
                    _actual(model.actual),
                    _model_state(model, agent.stale),
                ]
            )
    echo_table(
        ["agent", "host", "last seen", "applied", "model", "desired", "actual", "state"],
        rows,
        empty=(
            f"No agents enrolled in {report.environment} yet."
            if report.total == 0
            else f"No {report.state + ' ' if report.state else ''}agents from offset "
            f"{report.offset}."
        ),
    )
    if report.agents and (report.offset or report.next_offset is not None):
        last = report.offset + len(report.agents)
        more = f"; next: --offset {report.next_offset}" if report.next_offset is not None else ""
        click.echo(f"\nShowing agents {report.offset + 1}-{last}{more}", err=True)


def _actual(actual: ActualModel | None) -> str:
    if actual is None or actual.serving is None:
        return "-"
    return _entry(DesiredModel(version=actual.serving, shadow=actual.shadow))


def _model_state(model: AgentModelStatus, stale: bool) -> str:
    actual = model.actual
    # A model's own failure says more than whether it converged.
    if actual is not None and actual.status is not ModelStatus.ok:
        return actual.status.value + (f": {actual.error[:60]}" if actual.error else "")
    if stale:
        return "stale"
    return "converged" if model.converged else "converging"
