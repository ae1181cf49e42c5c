"""`tether agent enroll | run | status`: the commands of an agent on a connected host.

The library is imported inside each command, so `tether agent --help` stays fast (the drift
statistics behind the outbox load scipy).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import httpx

from agent.cli.options import (
    agent_data_dir_option,
    config_option,
    load_settings_or_exit,
    parse_labels,
)
from common.cli_options import json_option, tls_options
from common.display import ago, format_table, when


@click.command()
@click.option("--url", metavar="URL", help="Control plane URL.")
@click.option(
    "--env",
    "environment",
    metavar="ENV",
    help="Environment the enrollment token is for (checked against the answer).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="TETHER_ENROLLMENT_TOKEN",
    help="Enrollment token [$TETHER_ENROLLMENT_TOKEN].",
)
@click.option(
    "--pin",
    metavar="FINGERPRINT",
    help="Trust the control plane only if it signs with this key (from `tether key show`).",
)
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Enroll offline from a `tether agent provision` file; needs no --url or --token.",
)
@agent_data_dir_option
@click.option("--hostname", metavar="NAME", help="Name to report [this host's name].")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label to report, repeatable."
)
@click.option("--force", is_flag=True, help="Enroll again even if this data dir has an identity.")
@tls_options
@config_option
@json_option
def enroll(
    url: str | None,
    environment: str | None,
    token: str | None,
    pin: str | None,
    from_file: Path | None,
    data_dir: Path | None,
    hostname: str | None,
    labels: tuple[str, ...],
    force: bool,
    ca_file: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Enroll this host: its id, token and key pair, and the control plane's keys to trust.

    Online, an enrollment token is exchanged for the agent's id and token (mode 0600); the
    agent's own Ed25519 key pair is made here and its public key registered. The control
    plane's signing keys are trusted if --pin names one of them; without --pin they are
    trusted on first use, with a warning. With --from-file (an air-gapped host) the same is
    read from a `tether agent provision` file, with no network.

    Over https with a private CA, --ca-file names the CA to trust; where the control plane
    requires client certificates, --client-cert and --client-key name this host's. All three
    are checked before the request and kept with the identity for `tether agent run`.

    \b
    Example:
      tether agent enroll --url http://10.0.0.5:8500 --env production \\
          --token tether_enroll_... --pin SHA256:9xV... --label zone=eu-1
      tether agent enroll --url https://tether.internal --env production \\
          --token tether_enroll_... --ca-file /etc/tether/tls/ca.pem
      tether agent enroll --from-file edge-7.tether-agent --data-dir /var/lib/tether
    """
    from agent.airgap.exports import OfflineError
    from agent.airgap.provision import read_provision_file
    from agent.enrollment import EnrollmentFailed, enroll_from_file, enroll_online
    from agent.local.state import StateError, StateStore

    settings = load_settings_or_exit(
        config_file,
        data_dir=data_dir,
        url=url,
        ca_file=ca_file,
        client_cert=client_cert,
        client_key=client_key,
    )
    store = StateStore(settings.data_dir)
    try:
        existing = store.load_identity()
    except StateError:
        existing = None
    if existing is not None and not force:
        raise click.ClickException(
            f"{settings.data_dir} is already enrolled as {existing.agent_id} in "
            f"{existing.environment}; pass --force to enroll again"
        )
    try:
        if from_file is not None:
            provision = read_provision_file(from_file)
            if environment is not None and environment != provision.environment:
                raise click.ClickException(
                    f"{from_file} is for environment {provision.environment!r}, not {environment!r}"
                )
            enrolled = enroll_from_file(settings.data_dir, provision, pin)
        else:
            missing = [
                flag
                for flag, value in (("--url", url), ("--env", environment), ("--token", token))
                if not value
            ]
            if missing:
                raise click.UsageError(f"give {', '.join(missing)}, or --from-file FILE")
            assert settings.url is not None and token is not None and environment is not None
            enrolled = enroll_online(
                settings.data_dir,
                settings.url,
                token,
                environment,
                pin=pin,
                hostname=hostname,
                labels=parse_labels(labels),
                timeout=settings.request_timeout,
                tls=settings.tls_files(),
                # Tests hand in an in-process transport as the click `obj`.
                transport=click.get_current_context().find_object(httpx.BaseTransport),
            )
    except (OfflineError, EnrollmentFailed) as error:
        raise click.ClickException(str(error)) from None
    identity, keys = enrolled.identity, enrolled.trusted
    _warn_first_use(pin, keys)
    result = {
        "agent_id": identity.agent_id,
        "environment": identity.environment,
        "url": identity.url,
        "data_dir": str(settings.data_dir.resolve()),
        "trusted_keys": [key.fingerprint for key in keys],
        "pinned": pin,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(
            f"Enrolled agent {identity.agent_id} in {identity.environment}; identity in "
            f"{store.identity_path} (mode 0600). Start it with: tether agent run"
        )
        if from_file is not None:
            click.echo(f"{from_file} holds this agent's secrets: delete it now.")


def _warn_first_use(pin: str | None, keys: list[Any]) -> None:
    if pin is None:
        click.echo(
            "WARNING tether.agent.trust: no --pin given: trusting the control plane's signing "
            f"key(s) on first use: {', '.join(key.fingerprint for key in keys)}. Compare with "
            "`tether key show` on the control plane; if they differ, enroll again with --pin.",
            err=True,
        )


@click.command()
@config_option
@agent_data_dir_option
@click.option("--serve", metavar="HOST:PORT", help="Inference server address [127.0.0.1:8501].")
@click.option("--url", metavar="URL", help="Control plane URL [the one enrolled with].")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level [info].",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines as text, or as one JSON object per line for collectors [text].",
)
def run(
    config_file: Path | None,
    data_dir: Path | None,
    serve: str | None,
    url: str | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Run the agent in the foreground: poll, pull, verify, swap and serve.

    Logs go to stderr, one line per event, secrets redacted. SIGTERM or SIGINT stops it
    within 5 seconds, after in-flight requests finish. Settings come from defaults < --config
    file < TETHER_* variables < flags.

    \b
    Example:
      tether agent run --config /etc/tether/agent.toml --serve 127.0.0.1:8501
      tether agent run --log-format json
    """
    from agent.daemon import AgentDaemon, NotEnrolled, StartupError
    from agent.local.state import StateError
    from common.logs import configure_logging
    from common.tls import TlsFilesError

    settings = load_settings_or_exit(
        config_file,
        data_dir=data_dir,
        serve=serve,
        url=url,
        log_level=log_level,
        log_format=log_format,
    )
    configure_logging(settings.log_level, settings.log_format)
    transport = click.get_current_context().find_object(httpx.BaseTransport)
    try:
        daemon = AgentDaemon(settings, transport=transport)
    except (NotEnrolled, StateError, TlsFilesError) as error:
        raise click.ClickException(str(error)) from None
    try:
        daemon.run_forever()
    except StartupError as error:
        raise click.ClickException(str(error)) from None


@click.command()
@config_option
@agent_data_dir_option
@json_option
def status(config_file: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Show this agent's models and its contact with the control plane, without the network.

    \b
    Example:
      tether agent status --data-dir /var/lib/tether --json
    """
    from agent.local.state import StateError, StateStore, read_state_file
    from agent.local.trust import TrustError, TrustStore

    settings = load_settings_or_exit(config_file, data_dir=data_dir)
    try:
        identity = StateStore(settings.data_dir).load_identity()
        state = read_state_file(settings.data_dir)
        trusted = TrustStore(settings.data_dir).load()
    except (StateError, TrustError) as error:
        raise click.ClickException(str(error)) from None
    if identity is None and state is None:
        raise click.ClickException(
            f"no agent in {settings.data_dir}: enroll one with `tether agent enroll`"
        )
    report = status_report(identity, state, [key.fingerprint for key in trusted])
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(render_status(report))


def status_report(identity: Any, state: Any, trusted: list[str] | None = None) -> dict[str, Any]:
    """Build the status shown by `tether agent status` (and its --json) from local files."""
    applied = state.applied if state else None
    models = {}
    for name, actual in sorted((state.actual if state else {}).items()):
        models[name] = actual.model_dump(mode="json")
    return {
        "agent_id": identity.agent_id if identity else None,
        "environment": identity.environment if identity else None,
        "url": identity.url if identity else None,
        "applied_revision": applied.revision if applied else 0,
        "accepted_revision": state.accepted_revision if state else 0,
        "reachable": state.reachable if state else None,
        "last_successful_poll": _iso(state.last_successful_poll if state else None),
        "last_poll_attempt": _iso(state.last_poll_attempt if state else None),
        "last_heartbeat": _iso(state.last_heartbeat if state else None),
        "last_error": state.last_error if state else None,
        "last_error_at": _iso(state.last_error_at if state else None),
        "trusted_keys": trusted or [],
        "models": models,
    }


def render_status(report: dict[str, Any]) -> str:
    """Write a status report for people."""
    reachable = {True: "reachable", False: "UNREACHABLE", None: "not contacted yet"}
    lines = [
        f"Agent:          {report['agent_id'] or '-'} in {report['environment'] or '-'}",
        f"Control plane:  {report['url'] or '-'} ({reachable[report['reachable']]})",
        f"Last good poll: {_ago(report['last_successful_poll'])}",
        f"Revision:       applied {report['applied_revision']}, "
        f"newest accepted {report['accepted_revision']}",
        f"Trusted keys:   {', '.join(report.get('trusted_keys') or []) or 'NONE (enroll again)'}",
    ]
    if report["last_error"]:
        lines.append(f"Last error:     {report['last_error']} ({_ago(report['last_error_at'])})")
    rows = [["MODEL", "SERVING", "SHADOW", "STATUS", "PROBLEM"]]
    for name, model in report["models"].items():
        problem = f"{model['stage']}: {model['error']}" if model["error"] else ""
        rows.append(
            [
                name,
                f"v{model['serving']}" if model["serving"] else "-",
                f"v{model['shadow']}" if model["shadow"] else "-",
                model["status"],
                problem,
            ]
        )
    if len(rows) == 1:
        lines += ["", "No models yet."]
    else:
        lines += ["", format_table(rows[0], rows[1:])]
    return "\n".join(lines)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _ago(iso: str | None) -> str:
    if not iso:
        return "never"
    moment = datetime.fromisoformat(iso)
    return f"{when(moment)} ({ago(moment)})"
