"""`tether agent provision | import-bundle | export-reports | import-ack`: air-gapped sites.

The commands of the `tether agent` group that carry an agent's life in files: its identity in,
its models in, its reports out, their acknowledgement in. docs/air-gapped.md walks through them.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import httpx

from agent.cli.options import (
    agent_data_dir_option,
    config_option,
    load_settings_or_exit,
    parse_labels,
)
from common.cli_options import json_option, tls_options
from common.names import InvalidName, check_name

if TYPE_CHECKING:
    from agent.airgap.inbox import BundleReport, HandOff
    from agent.settings import AgentSettings

MIB = 1024 * 1024
BIG_BUNDLE = 64 * MIB  # a hand-off this big shows its progress


@click.command()
@click.argument("environment", metavar="ENV")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write, mode 0600: it holds the agent's secrets.",
)
@click.option(
    "--url",
    required=True,
    metavar="URL",
    envvar="TETHER_URL",
    help="Control plane URL, also recorded for the agent [$TETHER_URL].",
)
@click.option(
    "--token",
    required=True,
    metavar="TOKEN",
    envvar="TETHER_TOKEN",
    help="Admin token [$TETHER_TOKEN].",
)
@tls_options
@click.option("--hostname", metavar="NAME", help="Name the agent reports [offline-ENV].")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label to report, repeatable."
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@json_option
def provision(
    environment: str,
    out: Path,
    url: str,
    token: str,
    ca_file: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    hostname: str | None,
    labels: tuple[str, ...],
    force: bool,
    as_json: bool,
) -> None:
    """Create an agent identity for a host with no network, in one file (run by an operator).

    Makes the agent's key pair here, registers its public key with the control plane (admin
    token), and writes the agent id, its token and private key, the control plane's public
    keys, the environment and the URL to --out, mode 0600. Carry the file to the host and run
    `tether agent enroll --from-file FILE` there.

    \b
    Example:
      tether agent provision edge --out edge-7.tether-agent --hostname edge-7 \\
          --url https://tether.example.com --token $ADMIN_TOKEN
    """
    from agent.airgap.provision import ProvisionFile
    from agent.enrollment import enrollment_request
    from agent.local.trust import TrustError, choose_trust
    from agent.sync.client import ClientError, ControlPlaneClient
    from common.clock import utcnow
    from common.files import write_secret_file
    from common.signing import private_key_pem
    from common.tls import TlsFiles, TlsFilesError

    try:
        check_name(environment, "environment name")
    except InvalidName as error:
        raise click.BadParameter(str(error), param_hint="ENV") from None
    if out.exists() and not force:
        raise click.ClickException(f"{out} exists; pass --force to overwrite it")
    key, request = enrollment_request(hostname or f"offline-{environment}", parse_labels(labels))
    transport = click.get_current_context().find_object(httpx.BaseTransport)
    tls = TlsFiles(ca_file, client_cert, client_key)
    try:
        with ControlPlaneClient(url, token, transport=transport, tls=tls) as client:
            answer = client.provision(environment, request)
        keys = choose_trust(answer.signing_keys, None)
    except (ClientError, TrustError, TlsFilesError) as error:
        raise click.ClickException(f"provisioning failed: {error}") from None
    provisioned = ProvisionFile(
        agent_id=answer.agent_id,
        token=answer.token,
        environment=answer.environment,
        url=url.rstrip("/"),
        hostname=request.hostname,
        labels=request.labels,
        private_key_pem=private_key_pem(key).decode(),
        signing_keys=keys,
        created_at=utcnow(),
    )
    try:
        write_secret_file(out, provisioned.model_dump_json(indent=2).encode(), overwrite=force)
    except OSError as error:
        raise click.ClickException(
            f"cannot write {out}: {error.strerror or error}; agent {answer.agent_id} exists on "
            "the control plane now"
        ) from None
    if as_json:
        summary = {
            "agent_id": answer.agent_id,
            "environment": answer.environment,
            "file": str(out),
            "signing_keys": [k.fingerprint for k in keys],
        }
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"Provisioned agent {answer.agent_id} in {answer.environment}: {out} (mode 0600, holds "
        "its secrets). On the host: tether agent enroll --from-file " + out.name
    )


@click.command("import-bundle")
@click.argument("bundle", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="With the agent running: how long to wait for it to apply the bundle.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="With the agent running: hand the bundle over and return; `tether agent status` "
    "shows the outcome.",
)
@config_option
@agent_data_dir_option
@json_option
def import_bundle(
    bundle: Path,
    wait_seconds: float,
    no_wait: bool,
    config_file: Path | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Verify a signed bundle and apply it, with no network.

    The bundle passes the checks a pulled manifest does (signature by a trusted key,
    environment, revision not older than applied, not expired) and every file in it is checked
    against the manifest before it is cached. Then the same smoke test and atomic swap as
    online. If the agent runs on the data dir, the bundle is copied into its inbox
    (DATA_DIR/inbox) and the agent applies it while it keeps serving, with no gap; the command
    waits for its answer (--wait, --no-wait). Otherwise the command applies it itself.
    Exits 1 if the bundle is refused or a model failed to apply (it keeps its old version).

    \b
    Example:
      tether agent import-bundle edge-r12.tether-bundle.tar --data-dir /var/lib/tether
    """
    from agent.airgap.bundle import AgentRunning, BundleRefused, import_bundle_file
    from agent.airgap.inbox import BundleReport
    from agent.local.state import StateError

    settings = load_settings_or_exit(config_file, data_dir=data_dir)
    try:
        report = BundleReport.of(import_bundle_file(bundle, settings))
    except AgentRunning as running:
        handed = _hand_to_agent(bundle, settings, running.pid)
        if no_wait:
            if as_json:
                click.echo(json.dumps({"handed_off": str(handed.path), "agent_pid": running.pid}))
            else:
                click.echo(
                    f"Handed to the running agent as {handed.path}; it applies it within "
                    "seconds, keeping the old models serving until then: `tether agent status` "
                    "shows the outcome."
                )
            return
        report = _wait_for_agent(handed, wait_seconds, running.pid)
    except StateError as error:
        raise click.ClickException(str(error)) from None
    except BundleRefused as error:
        report = BundleReport(refused=str(error))
    _show_import(report, as_json)


def _agent(pid: int | None) -> str:
    return f"the running agent (pid {pid if pid is not None else '?'})"


def _hand_to_agent(bundle: Path, settings: AgentSettings, pid: int | None) -> HandOff:
    """Copy the bundle into the running agent's inbox, with progress for a big one."""
    from agent.airgap.bundle import BundleRefused
    from agent.airgap.inbox import InboxError, hand_off

    stream = sys.stderr  # looked up now: CliRunner swaps it
    size = bundle.stat().st_size if bundle.is_file() else 0
    copy = functools.partial(
        hand_off,
        bundle,
        settings.data_dir,
        max_bytes=settings.max_bundle_bytes,
        reserve_bytes=settings.free_disk_reserve_bytes,
    )
    try:
        if size < BIG_BUNDLE or size > settings.max_bundle_bytes:  # too big: refused at once
            handed = copy()
        elif stream.isatty():
            label = f"Handing the bundle to {_agent(pid)}"
            with click.progressbar(length=size, label=label, file=stream) as bar:
                handed = copy(progress=bar.update)
        else:
            click.echo(f"Copying {size // MIB} MiB into the inbox of {_agent(pid)}...", err=True)
            handed = copy()
    except BundleRefused as error:
        raise click.ClickException(f"bundle refused, nothing applied: {error}") from None
    except InboxError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Handed {bundle.name} to {_agent(pid)}.", err=True)
    return handed


def _wait_for_agent(handed: HandOff, seconds: float, pid: int | None) -> BundleReport:
    from agent.airgap.inbox import InboxError, process_alive, wait_for_result

    click.echo(f"Waiting up to {seconds:g} s for it to apply the bundle...", err=True)
    try:
        return wait_for_result(handed, seconds, lambda: process_alive(pid))
    except InboxError as error:
        raise click.ClickException(str(error)) from None


def _show_import(report: BundleReport, as_json: bool) -> None:
    """Print what an import did, the same whoever applied it; exit 1 unless applied in full."""
    if report.refused is not None:
        raise click.ClickException(f"bundle refused, nothing applied: {report.refused}")
    if report.error is not None:
        raise click.ClickException(f"the agent could not apply the bundle: {report.error}")
    if as_json:
        keys = ("environment", "revision", "signed_by", "cached", "reused", "checked")
        summary = report.model_dump(include={*keys, "swapped", "removed", "failed"})
        click.echo(json.dumps(summary, indent=2))
    else:
        # Every file in the bundle was hashed, those already cached too: say so.
        checked = f"; all {report.checked} in it match their digests" if report.checked else ""
        click.echo(
            f"Bundle revision {report.revision} of {report.environment} verified (key "
            f"{report.signed_by}){checked}; {report.cached} file(s) cached, {report.reused} "
            "already there."
        )
        for name in report.swapped:
            click.echo(f"  {name}: now v{report.versions[name]}")
        for name in report.removed:
            click.echo(f"  {name}: removed")
    problems = [f"{name}: {why}" for name, why in report.failed.items()]
    problems += [f"{name}: not tried, the agent was stopping" for name in report.waiting]
    if problems:
        raise click.ClickException(
            f"not applied in full (old versions keep serving): {'; '.join(problems)}"
        )


@click.command("export-reports")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write the signed export to.",
)
@config_option
@agent_data_dir_option
@json_option
def export_reports(
    out: Path, config_file: Path | None, data_dir: Path | None, as_json: bool
) -> None:
    """Write the outbox (reports and heartbeats) to one file, signed with this agent's key.

    The reports stay in the outbox until `tether agent import-ack` applies the control plane's
    acknowledgement, so exporting twice loses nothing and the control plane stores each once.

    \b
    Example:
      tether agent export-reports --out edge-7-reports.json --data-dir /var/lib/tether
    """
    from agent.airgap.exports import OfflineError, write_report_export
    from agent.local.state import StateError

    settings = load_settings_or_exit(config_file, data_dir=data_dir)
    try:
        exported = write_report_export(settings.data_dir, out)
    except (OfflineError, StateError) as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot write {out}: {error.strerror or error}") from None
    export = exported.export
    if as_json:
        summary = {
            "agent_id": export.agent_id,
            "file": str(out),
            "reports": len(export.reports),
            "heartbeats": len(export.heartbeats),
            "left_behind": exported.left_behind,
        }
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"Exported {len(export.reports)} report(s) and {len(export.heartbeats)} heartbeat(s) "
        f"of agent {export.agent_id} to {out}. On the control plane: tether reports import {out}"
    )
    if exported.left_behind:
        click.echo(f"{exported.left_behind} more wait: export again once this one is acknowledged.")


@click.command("import-ack")
@click.argument("ack_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@agent_data_dir_option
@json_option
def import_ack(
    ack_file: Path, config_file: Path | None, data_dir: Path | None, as_json: bool
) -> None:
    """Apply the control plane's acknowledgement: drop the reports it stored from the outbox.

    The file must be signed by a control-plane key this agent trusts and name this agent;
    otherwise nothing is cleared.

    \b
    Example:
      tether agent import-ack edge-7-reports.ack.json --data-dir /var/lib/tether
    """
    from agent.airgap.exports import OfflineError, apply_ack_file
    from agent.local.state import StateError

    settings = load_settings_or_exit(config_file, data_dir=data_dir)
    try:
        applied = apply_ack_file(settings.data_dir, ack_file)
    except (OfflineError, StateError) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        summary = {"removed": applied.removed, "remaining": applied.remaining}
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"{applied.removed} report(s) acknowledged and removed from the outbox; "
        f"{applied.remaining} still wait."
    )


COMMANDS = [provision, import_bundle, export_reports, import_ack]
