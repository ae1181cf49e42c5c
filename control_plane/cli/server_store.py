"""`tether server migrate | migrate-store | backup`: the control plane's database by hand.

Replicas on PostgreSQL never migrate on start, so an operator (or a deploy job) runs
`migrate` once per release; `migrate-store` moves a growing user from SQLite to PostgreSQL;
`backup` copies the embedded SQLite store while it serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from common.cli_options import json_option
from control_plane.cli.output import echo_json, echo_table, size
from control_plane.cli.server import announce_first_token, settings_from, settings_options
from control_plane.store.db import BadDatabaseUrl, DatabaseUnavailable, DatabaseUrl


@click.command()
@settings_options
@json_option
@click.pass_context
def migrate(ctx: click.Context, config_file: Path | None, as_json: bool, **options: Any) -> None:
    """Bring the database's schema up to this release; on an empty one, make the first token.

    The first admin token is printed once and written, mode 0600, to DATA_DIR/admin.token.
    Safe to run again, and from two machines at once: each migration is applied once.

    \b
    Example:
      tether server migrate --database-url postgresql://tether@db.internal/tether
    """
    from control_plane.bootstrap import migrate as apply_migrations
    from control_plane.store.migrations import migrations
    from control_plane.store.schema import SchemaMismatch

    settings, _ = settings_from(ctx, config_file, **options)
    try:
        applied, token = apply_migrations(settings)
    except (SchemaMismatch, DatabaseUnavailable) as error:
        raise click.ClickException(str(error)) from None
    except _database_errors(settings.database) as error:
        raise click.ClickException(_cannot_open(settings.database, error)) from None
    if as_json:
        echo_json(
            {
                "database": settings.database.shown,
                "applied": applied,
                "schema": migrations.names[-1],
                "admin_token": token,
                "admin_token_file": str(settings.admin_token_path) if token else None,
            }
        )
        return
    if applied:
        click.echo(f"Applied {len(applied)} migration(s) to {settings.database.shown}:")
        for name in applied:
            click.echo(f"  {name}")
    else:
        click.echo(f"{settings.database.shown} is up to date ({migrations.names[-1]}).")
    if token is not None:
        announce_first_token(token, settings)


@click.command("migrate-store")
@click.option("--from", "source_url", required=True, help="The database to copy: its URL.")
@click.option("--to", "target_url", required=True, help="An empty database to copy into.")
@json_option
def migrate_store(source_url: str, target_url: str, as_json: bool) -> None:
    """Copy every table from one database to another, and check the counts match.

    Stop the server first, or run this while it serves: the source is read in one
    transaction, so the copy is a consistent snapshot either way. The target must be empty;
    it is migrated first. Signing keys and the dashboard session key are files, not rows:
    point the new servers' --secrets-dir at the old data dir's keys/ and session.key, or
    agents will not trust the new signer.

    \b
    Example:
      tether server migrate-store --from sqlite:///tether-data/tether.db \\
          --to postgresql://tether@db.internal/tether
    """
    from control_plane.store.copy import CopyRefused, copy_store
    from control_plane.store.db import opened
    from control_plane.store.schema import SchemaMismatch

    source, target = _parse_url("--from", source_url), _parse_url("--to", target_url)
    if source.url == target.url:
        raise click.UsageError("--from and --to name the same database")
    if source.dialect == "sqlite" and not (source.path and source.path.is_file()):
        raise click.UsageError(f"--from: no SQLite database at {source.path}")

    def progress(table: str, rows: int) -> None:
        click.echo(f"  {table}: {rows} row(s) copied", err=True)

    click.echo(f"Copying {source.shown} to {target.shown}", err=True)
    try:
        with opened(source) as from_db, opened(target) as to_db:
            copied = copy_store(from_db, to_db, progress)
    except (CopyRefused, SchemaMismatch, DatabaseUnavailable) as error:
        raise click.ClickException(str(error)) from None
    except _database_errors(source) + _database_errors(target) as error:
        raise click.ClickException(f"the copy failed, nothing was kept: {error}") from None
    if as_json:
        echo_json(
            {
                "from": source.shown,
                "to": target.shown,
                "tables": [
                    {"table": item.table, "source_rows": item.source_rows, "rows": item.target_rows}
                    for item in copied
                ],
            }
        )
        return
    echo_table(
        ["TABLE", "SOURCE ROWS", "COPIED"],
        [(item.table, item.source_rows, item.target_rows) for item in copied],
        empty="",
    )
    total = sum(item.target_rows for item in copied)
    click.echo(f"Copied {total} row(s); every table's count matches.")
    click.echo(
        "Next: point the new servers' secrets_dir at the old keys/ and session.key "
        "(docs/scale-out.md), so agents keep trusting the same signer."
    )


@click.command()
@settings_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The backup file to write (must not exist).",
)
@json_option
@click.pass_context
def backup(
    ctx: click.Context, config_file: Path | None, out: Path, as_json: bool, **options: Any
) -> None:
    """Write a consistent copy of the SQLite store, while the server keeps serving.

    For PostgreSQL use pg_dump (docs/scale-out.md, "Backups"). Signing keys and the session
    key live in the secrets dir: back that up too.

    \b
    Example:
      tether server backup --data-dir /var/lib/tether-server --out /backups/tether.db
    """
    from control_plane.store.backup import BackupFailed, backup_sqlite

    settings, _ = settings_from(ctx, config_file, **options)
    database = settings.database
    if database.dialect != "sqlite" or database.path is None:
        raise click.ClickException(
            f"{database.shown} is PostgreSQL: back it up with pg_dump "
            '(docs/scale-out.md, "Backups")'
        )
    try:
        written = backup_sqlite(database.path, out)
    except BackupFailed as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        echo_json({"database": database.shown, "out": str(out), "bytes": written})
        return
    click.echo(f"Backed up {database.shown} to {out} ({size(written)}).")
    click.echo(f"Keep {settings.keys_dir} and {settings.session_key_path} with it.")


def _parse_url(option: str, url: str) -> DatabaseUrl:
    try:
        return DatabaseUrl.parse(url)
    except BadDatabaseUrl as error:
        raise click.BadParameter(str(error), param_hint=option) from None


def _database_errors(url: DatabaseUrl) -> tuple[type[Exception], ...]:
    """What the driver raises when a database cannot be opened or written."""
    import sqlite3

    if url.dialect == "sqlite":
        return (sqlite3.Error,)
    import psycopg
    import psycopg_pool

    return (psycopg.Error, psycopg_pool.PoolTimeout)


def _cannot_open(url: DatabaseUrl, error: Exception) -> str:
    return f"cannot use {url.shown}: {str(error).strip() or type(error).__name__}"
