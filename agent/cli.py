"""`tether agent`: enroll this host, run the agent, show its status from local state."""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from common.config import ConfigError
from common.schemas import EnrollRequest

F = TypeVar("F", bound=Callable[..., Any])


def config_option(command: F) -> F:
    """Add --config: the agent.toml to read."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="TETHER_AGENT_CONFIG",
        help="agent.toml to read [$TETHER_AGENT_CONFIG].",
    )(command)


def data_dir_option(command: F) -> F:
    """Add --data-dir."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Agent state and cache [/var/lib/tether as root, else ./tether-agent].",
    )(command)


def json_option(command: F) -> F:
    """Add --json."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")(command)


def _settings(config_file: Path | None, **overrides: Any):  # type: ignore[no-untyped-def]
    from agent.settings import load_agent_settings

    try:
        return load_agent_settings(config_file, overrides=overrides)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


@click.group()
def agent() -> None:
    """Run the agent on a serving host: enroll it, run it, check its status.

    \b
    Example:
      tether agent enroll --url https://tether.example.com --env production --token $TOKEN
      tether agent run
      tether agent status
    """


@agent.command()
@click.option("--url", required=True, metavar="URL", help="Control plane URL.")
@click.option(
    "--env",
    "environment",
    required=True,
    metavar="ENV",
    help="Environment the enrollment token is for (checked against the answer).",
)
@click.option(
    "--token",
    required=True,
    metavar="TOKEN",
    envvar="TETHER_ENROLLMENT_TOKEN",
    help="Enrollment token [$TETHER_ENROLLMENT_TOKEN].",
)
@data_dir_option
@click.option("--hostname", metavar="NAME", help="Name to report [this host's name].")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label to report, repeatable."
)
@click.option("--force", is_flag=True, help="Enroll again even if this data dir has an identity.")
@config_option
@json_option
def enroll(
    url: str,
    environment: str,
    token: str,
    data_dir: Path | None,
    hostname: str | None,
    labels: tuple[str, ...],
    force: bool,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Exchange an enrollment token for this agent's id and token, stored mode 0600.

    \b
    Example:
      tether agent enroll --url http://10.0.0.5:8500 --env production \\
          --token tether_enroll_... --label zone=eu-1
    """
    from agent.client import ClientError, ControlPlaneClient
    from agent.poller import agent_version
    from agent.state import Identity, StateError, StateStore, utcnow

    settings = _settings(config_file, data_dir=data_dir, url=url)
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
    host = hostname or socket.gethostname()
    request = EnrollRequest(
        hostname=host, labels=_parse_labels(labels), agent_version=agent_version()
    )
    assert settings.url is not None
    # Tests hand in an in-process transport as the click `obj`.
    transport = click.get_current_context().find_object(httpx.BaseTransport)
    try:
        with ControlPlaneClient(
            settings.url, timeout=settings.request_timeout, transport=transport
        ) as client:
            answer = client.enroll(token, request)
    except ClientError as error:
        raise click.ClickException(f"enrollment failed: {error}") from None
    if answer.environment != environment:
        raise click.ClickException(
            f"the token enrolled this agent into {answer.environment!r}, not {environment!r}; "
            f"agent {answer.agent_id} exists there now, nothing was stored"
        )
    identity = Identity(
        agent_id=answer.agent_id,
        token=answer.token,
        url=settings.url,
        environment=answer.environment,
        hostname=host,
        labels=request.labels,
        enrolled_at=utcnow(),
    )
    try:
        store.save_identity(identity)
    except OSError as error:
        raise click.ClickException(f"cannot write {store.identity_path}: {error}") from None
    result = {
        "agent_id": answer.agent_id,
        "environment": answer.environment,
        "url": settings.url,
        "data_dir": str(settings.data_dir.resolve()),
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(
            f"Enrolled agent {answer.agent_id} in {answer.environment}; identity in "
            f"{store.identity_path} (mode 0600). Start it with: tether agent run"
        )


@agent.command()
@config_option
@data_dir_option
@click.option("--serve", metavar="HOST:PORT", help="Inference server address [127.0.0.1:8501].")
@click.option("--url", metavar="URL", help="Control plane URL [the one enrolled with].")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level [info].",
)
def run(
    config_file: Path | None,
    data_dir: Path | None,
    serve: str | None,
    url: str | None,
    log_level: str | None,
) -> None:
    """Run the agent in the foreground: poll, pull, verify, swap and serve.

    Logs go to stderr. SIGTERM or SIGINT stops it within 5 seconds, after in-flight
    requests finish. Settings come from defaults < --config file < TETHER_* variables < flags.

    \b
    Example:
      tether agent run --config /etc/tether/agent.toml --serve 127.0.0.1:8501
    """
    from agent.daemon import AgentDaemon, NotEnrolled, StartupError
    from agent.state import StateError

    settings = _settings(config_file, data_dir=data_dir, serve=serve, url=url, log_level=log_level)
    configure_logging(settings.log_level)
    transport = click.get_current_context().find_object(httpx.BaseTransport)
    try:
        daemon = AgentDaemon(settings, transport=transport)
    except (NotEnrolled, StateError) as error:
        raise click.ClickException(str(error)) from None
    try:
        daemon.run_forever()
    except StartupError as error:
        raise click.ClickException(str(error)) from None


@agent.command()
@config_option
@data_dir_option
@json_option
def status(config_file: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Show this agent's models and its contact with the control plane, without the network.

    \b
    Example:
      tether agent status --data-dir /var/lib/tether --json
    """
    from agent.state import StateError, StateStore, read_state_file

    settings = _settings(config_file, data_dir=data_dir)
    try:
        identity = StateStore(settings.data_dir).load_identity()
        state = read_state_file(settings.data_dir)
    except StateError as error:
        raise click.ClickException(str(error)) from None
    if identity is None and state is None:
        raise click.ClickException(
            f"no agent in {settings.data_dir}: enroll one with `tether agent enroll`"
        )
    report = status_report(identity, state)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(render_status(report))


def status_report(identity: Any, state: Any) -> dict[str, Any]:
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
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines.append("")
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
    return "\n".join(lines)


def configure_logging(level: str) -> None:
    """Log to stderr, one line per event, for journald and terminals alike."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per scheduled run would drown the agent's own log.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _parse_labels(labels: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{label!r} is not KEY=VALUE", param_hint="--label")
        parsed[key.strip()] = value.strip()
    return parsed


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _ago(iso: str | None) -> str:
    if not iso:
        return "never"
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    shown = moment.strftime("%Y-%m-%d %H:%M:%SZ")
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{shown} ({seconds // size}{unit} ago)"
    return f"{shown} ({seconds}s ago)"
