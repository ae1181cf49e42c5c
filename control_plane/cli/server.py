"""`tether server`: run the control plane."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from common.cli_options import data_dir_option
from common.config import ConfigError, load_settings
from control_plane.artifacts import ArtifactStoreError
from control_plane.bootstrap import bootstrap
from control_plane.settings import ControlPlaneSettings


@click.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TETHER_CONFIG",
    help="control-plane.toml to read.",
)
@data_dir_option("Where the database and artifacts live [./tether-data].")
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
def server(
    config_file: Path | None,
    data_dir: Path | None,
    artifact_store: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    log_format: str | None,
) -> None:
    """Run the control plane's REST API with a production WSGI server.

    On first start it creates an admin token, prints it once and writes it, mode 0600, to
    DATA_DIR/admin.token.

    \b
    Example:
      tether server --data-dir /var/lib/tether-server --host 0.0.0.0 --port 8500
      tether server --log-format json
      tether server --artifact-store s3://models/tether
    """
    from control_plane.logs import configure_logging
    from control_plane.server import ControlPlaneServer

    overrides = {
        "data_dir": data_dir,
        "artifact_store": artifact_store,
        "host": host,
        "port": port,
        "workers": workers,
        "log_format": log_format,
    }
    try:
        settings = load_settings(ControlPlaneSettings, config_file, overrides=overrides)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    configure_logging(settings.log_level, settings.log_format)
    try:
        token = bootstrap(settings)
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
        click.echo(
            f"Created the first admin token (also in {settings.admin_token_path}, mode 0600):\n"
            f"  {token}\n"
            "It is shown only this once.",
            err=True,
        )
    if settings.log_format == "text":
        click.echo(
            f"Tether control plane on http://{settings.host}:{settings.port} "
            f"(data: {settings.data_dir.resolve()})",
            err=True,
        )
    app_config = {**{k: v for k, v in overrides.items() if v is not None}}
    if config_file is not None:
        app_config["config_file"] = config_file
    ControlPlaneServer(settings, app_config).run()
