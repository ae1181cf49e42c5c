"""`tether reports` and `tether events`: what the fleet reports and what the control plane did."""

from __future__ import annotations

from pathlib import Path

import click

from common.cli_options import json_option
from common.display import when
from common.policy import EVENT_KINDS
from control_plane.cli.client import OperatorClient
from control_plane.cli.options import name_argument, with_client
from control_plane.cli.output import echo_json, echo_table


@click.group()
def reports() -> None:
    """Look at fleet-wide drift and shadow comparisons.

    \b
    Example:
      tether reports drift production wine --since 2026-11-26T00:00:00Z
    """


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@reports.command()
@name_argument("environment", "environment name", "ENV")
@name_argument("model", "model name", "MODEL")
@click.option("--since", metavar="TIME", help="Windows ending after this ISO time [1 h ago].")
@json_option
@with_client
def drift(
    client: OperatorClient, environment: str, model: str, since: str | None, as_json: bool
) -> None:
    """Show drift of the serving version, every agent's window merged exactly.

    \b
    Example:
      tether reports drift production wine
    """
    view = client.fleet_drift(environment, model, since)
    if as_json:
        echo_json(view)
        return
    if view.report is None:
        click.echo(f"No drift figure for {model} in {environment}: {view.reason}")
        return
    report = view.report
    verdict = "DRIFT" if report.dataset_drift else "no drift"
    click.echo(
        f"{model} v{view.version} in {environment}: {verdict} - {report.n_drifted} of "
        f"{report.n_features} features drifted ({report.share_drifted:.0%}), "
        f"{report.window_rows} rows from {view.windows} windows of {len(view.agents)} agent(s)"
    )
    rows = [
        [
            name,
            f.test,
            _figure(f.score, 4),
            _figure(f.threshold, 4),
            _figure(f.psi),
            "yes" if f.drifted else "no",
        ]
        for name, f in sorted(
            report.features.items(), key=lambda item: (not item[1].drifted, item[0])
        )
    ]
    echo_table(["feature", "test", "score", "threshold", "psi", "drifted"], rows, "No features.")


@reports.command()
@name_argument("environment", "environment name", "ENV")
@name_argument("model", "model name", "MODEL")
@click.option("--since", metavar="TIME", help="Windows ending after this ISO time [1 h ago].")
@json_option
@with_client
def shadow(
    client: OperatorClient, environment: str, model: str, since: str | None, as_json: bool
) -> None:
    """Show how the shadow compares with the primary across the fleet.

    \b
    Example:
      tether reports shadow production wine
    """
    view = client.fleet_shadow(environment, model, since)
    if as_json:
        echo_json(view)
        return
    if view.shadow_version is None:
        click.echo(f"{model} has no shadow in {environment}.")
        return
    click.echo(f"{model} in {environment}: v{view.version} (primary) vs v{view.shadow_version}")
    rows = [
        [
            who,
            t.shadowed,
            t.dropped,
            t.shadow_errors,
            _figure(t.agreement, 4),
            _figure(t.primary_p95_ms, 2),
            _figure(t.shadow_p95_ms, 2),
            _figure(t.latency_ratio, 2),
        ]
        for who, t in [("fleet", view.fleet), *sorted(view.agents.items())]
    ]
    echo_table(
        ["agent", "shadowed", "dropped", "errors", "agreement", "p95 ms", "shadow p95", "ratio"],
        rows,
        "No shadow reports yet.",
    )


@click.command()
@click.option("--env", "environment", metavar="ENV", help="Only this environment.")
@click.option("--kind", type=click.Choice(EVENT_KINDS), help="Only this kind of event.")
@click.option("--since", metavar="TIME", help="Only events after this ISO time.")
@click.option(
    "--limit", type=click.IntRange(1, 5000), default=50, show_default=True, help="At most N events."
)
@json_option
@with_client
def events(
    client: OperatorClient,
    environment: str | None,
    kind: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List promotions, rollbacks, drift alerts and webhook deliveries, newest first.

    \b
    Example:
      tether events --env production --kind drift_alert
    """
    found = client.events(environment=environment, kind=kind, since=since, limit=limit)
    if as_json:
        echo_json(found)
        return
    echo_table(
        ["id", "when", "kind", "environment", "model", "message"],
        [[e.id, when(e.at), e.kind, e.environment, e.model, e.message] for e in found.events],
        "No events.",
    )


@reports.command(name="import")
@click.argument(
    "export_file", metavar="FILE", type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--ack-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the acknowledgement for the agent [FILE with .ack.json].",
)
@json_option
@with_client
def import_reports(
    client: OperatorClient, export_file: Path, ack_out: Path | None, as_json: bool
) -> None:
    """Import an offline agent's signed report export; write the acknowledgement to carry back.

    The control plane checks the agent's signature and stores each report once (importing the
    same file again stores nothing new); a tampered file is refused whole. Take the
    acknowledgement back to the site for `tether agent import-ack`, which clears the outbox.

    \b
    Example:
      tether reports import edge-7-reports.json --ack-out edge-7-reports.ack.json
    """
    target = ack_out or export_file.with_name(f"{export_file.stem}.ack.json")
    ack = client.import_reports(export_file.read_bytes())
    try:
        target.write_text(ack.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise click.ClickException(
            f"reports stored, but cannot write {target}: {error.strerror or error}; import the "
            "same file again to get the acknowledgement (nothing is stored twice)"
        ) from None
    if as_json:
        echo_json({**ack.model_dump(mode="json", exclude={"signatures"}), "file": str(target)})
        return
    click.echo(
        f"Agent {ack.agent_id}: {ack.stored} report(s) stored, {ack.duplicates} already there."
    )
    click.echo(f"Acknowledgement: {target}. On the site: tether agent import-ack {target.name}")
