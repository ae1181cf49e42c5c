"""`tether server`: run the control plane, and look after its database.

`tether server` alone runs the REST API; its subcommands (control_plane/cli/server_store.py)
migrate the schema, move a store to another database and back up the embedded one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from common.cli_options import data_dir_option
from common.config import ConfigError, load_settings
from control_plane.settings import ControlPlaneSettings

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(command: F) -> F:
    """Add the options that say where a control plane's state lives."""
    decorators = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="TETHER_CONFIG",
            help="control-plane.toml to read.",
        ),
        data_dir_option("Where the admin token, metrics and local artifacts live [./tether-data]."),
        click.option(
            "--database-url",
            help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB [sqlite in DATA_DIR]; "
            "also TETHER_DATABASE_URL.",
        ),
        click.option(
            "--secrets-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Signing keys and the dashboard session key; replicas share one [DATA_DIR].",
        ),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def settings_from(
    ctx: click.Context, config_file: Path | None, **overrides: Any
) -> tuple[ControlPlaneSettings, dict[str, Any]]:
    """Load settings: the file, TETHER_* variables, then flags (a subcommand's over the group's)."""
    group = dict(ctx.obj) if isinstance(ctx.obj, dict) else {}
    config_file = config_file or group.pop("config_file", None)
    given = {name: value for name, value in group.items() if value is not None}
    given.update({name: value for name, value in overrides.items() if value is not None})
    try:
        settings = load_settings(ControlPlaneSettings, config_file, overrides=given)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if config_file is not None:
        given["config_file"] = config_file
    return settings, given


@click.group(invoke_without_command=True)
@settings_options
@click.option(
    "--artifact-store",
    help="A directory (a shared mount for replicas) or s3://BUCKET/PREFIX [DATA_DIR/artifacts].",
)
@click.option("--host", help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [8500].")
@click.option("--workers", type=int, help="Worker processes [2].")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines as text, or as one JSON object per line for collectors [text].",
)
@click.pass_context
def server(ctx: click.Context, config_file: Path | None, **options: Any) -> None:
    """Run the control plane's REST API with a production WSGI server.

    On SQLite (the default) a start migrates the schema and, on the first start, creates an
    admin token, prints it once and writes it, mode 0600, to DATA_DIR/admin.token. On
    PostgreSQL a start only checks the schema: run `tether server migrate` first.

    \b
    Example:
      tether server --data-dir /var/lib/tether-server --host 0.0.0.0 --port 8500
      tether server --database-url postgresql://tether@db.internal/tether
      tether server --artifact-store s3://models/tether
      tether server --log-format json
    """
    if ctx.invoked_subcommand is not None:
        # Options given before a subcommand hold for it (`tether server --data-dir D migrate`).
        ctx.obj = {"config_file": config_file, **options}
        return
    settings, app_config = settings_from(ctx, config_file, **options)
    run(settings, app_config)


def run(settings: ControlPlaneSettings, app_config: dict[str, Any]) -> None:
    from control_plane.artifacts import ArtifactStoreError
    from control_plane.bootstrap import bootstrap
    from control_plane.logs import configure_logging
    from control_plane.server import ControlPlaneServer
    from control_plane.store.db import DatabaseUnavailable
    from control_plane.store.schema import SchemaMismatch

    configure_logging(settings.log_level, settings.log_format)
    try:
        token = bootstrap(settings)
    except (SchemaMismatch, DatabaseUnavailable) as error:
        raise click.ClickException(f"will not start: {error}") from None
    except ArtifactStoreError as error:
        raise click.ClickException(str(error)) from None
    if settings.log_format == "json":
        # Collectors get events, and never a secret: the token stays in its file.
        log = logging.getLogger("tether.server")
        if token is not None:
            log.warning("created the first admin token in %s, mode 0600", settings.admin_token_path)
        log.info("Tether control plane on http://%s:%s", settings.host, settings.port)
        token = None
    if token is not None:
        announce_first_token(token, settings)
    if settings.log_format == "text":
        click.echo(
            f"Tether control plane on http://{settings.host}:{settings.port} "
            f"(database: {settings.database.shown})",
            err=True,
        )
    ControlPlaneServer(settings, app_config).run()


def announce_first_token(token: str, settings: ControlPlaneSettings) -> None:
    """Print the first admin token, once, to standard error."""
    click.echo(
        f"Created the first admin token (also in {settings.admin_token_path}, mode 0600):\n"
        f"  {token}\n"
        "It is shown only this once.",
        err=True,
    )


def _add_subcommands() -> None:
    from control_plane.cli.server_store import backup, migrate, migrate_store

    for command in (migrate, migrate_store, backup):
        server.add_command(command)


_add_subcommands()
