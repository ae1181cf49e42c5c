"""`tether server migrate | migrate-store | backup`, against real SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from common.cli import cli
from common.schemas import Role
from control_plane.app import create_app
from control_plane.store.copy import TABLES, count_rows
from control_plane.store.db import DatabaseUrl, opened, write_transaction
from scripts.cluster.postgres import LocalPostgres
from tests.support.api import Api
from tests.support.operator import Operator
from tests.support.processes import TETHER, ServerProcess
from tests.support.reports import shadow_report

pytestmark = pytest.mark.usefixtures("postgres_server")


def tether(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def populate(data_dir: Path, model_bytes: bytes) -> tuple[Flask, Api]:
    """A SQLite control plane with rows in every table, made the way a real one makes them."""
    app = create_app({"data_dir": data_dir})
    api = Api(app.test_client(), app.extensions["tether"].new_admin_token)
    api.create_env("production")
    api.operator.push("wine", model_bytes)
    api.operator.push("wine", model_bytes + b"2")
    assert api.set_desired("production", "wine", 1).status_code == 200
    assert api.set_desired("production", "wine", 1, shadow=2).status_code == 200
    agent = api.enroll("production")
    batch = [shadow_report("wine", 1, 2, shadowed=40, agreed=39) for _ in range(3)]
    response = api.send(
        "POST", f"/api/v1/agents/{agent['agent_id']}/reports", {"reports": batch},
        token=agent["token"],
    )  # fmt: skip
    assert response.status_code == 200, response.get_json()
    store = app.extensions["tether"].store
    with write_transaction(store.db):
        event = store.events.record("promoted", "production", "wine", "v2 promoted", version=2)
        assert event is not None
        store.events.add_delivery(event, "https://hooks.example/tether")
        store.events.block("production", "wine", 2, "drift")
    return app, api


def dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order: what must survive a copy unchanged."""
    with opened(DatabaseUrl.parse(url)) as db:
        return {
            table: [tuple(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY {order}")
                    .fetchall()]
            for table, order in TABLES.items()
        }  # fmt: skip


def test_migrate_store_copies_every_table_to_postgresql_and_back_unchanged(
    tmp_path: Path, postgres_url: str, wine_model_bytes: bytes
):
    app, _ = populate(tmp_path / "old", wine_model_bytes)
    app.extensions["tether"].close()
    source = f"sqlite:///{tmp_path / 'old' / 'tether.db'}"
    with opened(DatabaseUrl.parse(source)) as db:
        counts = count_rows(db)
    assert all(counts.values()), counts  # every table has something to lose

    code, out, err = tether("server", "migrate-store", "--from", source, "--to", postgres_url,
                            "--json")  # fmt: skip
    assert code == 0, err
    copied = {item["table"]: item for item in json.loads(out)["tables"]}
    assert set(copied) == set(TABLES)
    assert all(copied[t]["source_rows"] == copied[t]["rows"] == counts[t] for t in TABLES)
    assert f"tokens: {counts['tokens']} row(s) copied" in err  # progress, table by table

    back = f"sqlite:///{tmp_path / 'back' / 'tether.db'}"
    (tmp_path / "back").mkdir()
    code, _, err = tether("server", "migrate-store", "--from", postgres_url, "--to", back)
    assert code == 0, err
    assert dump(back) == dump(source)


def test_a_control_plane_on_the_copy_serves_the_old_tokens_and_keeps_counting(
    tmp_path: Path, postgres_url: str, wine_model_bytes: bytes
):
    old, old_api = populate(tmp_path / "old", wine_model_bytes)
    token, revision = old_api.token, old_api.operator.revision("production")
    old.extensions["tether"].close()
    source = f"sqlite:///{tmp_path / 'old' / 'tether.db'}"
    assert tether("server", "migrate-store", "--from", source, "--to", postgres_url)[0] == 0

    # The keys are files: the new server shares the old data dir's secrets, as the docs say.
    new = create_app(
        {"data_dir": tmp_path / "new", "database_url": postgres_url,
         "secrets_dir": tmp_path / "old"}
    )  # fmt: skip
    try:
        api = Api(new.test_client(), token)
        assert [v["version"] for v in api.get("/api/v1/models/wine/versions").get_json()
                ["versions"]] == [1, 2]  # fmt: skip
        assert api.operator.revision("production") == revision
        # New rows take ids after the copied ones: the identity counters moved past them.
        assert api.set_desired("production", "wine", 2).status_code == 200
        history = api.get("/api/v1/environments/production/history").get_json()["entries"]
        assert [entry["revision"] for entry in history][:2] == [revision + 1, revision]
        assert api.create_token(Role.viewer.value).startswith("tether_")
    finally:
        new.extensions["tether"].close()


def test_migrate_store_refuses_a_target_that_is_not_empty_and_changes_nothing(
    tmp_path: Path, postgres_url: str, wine_model_bytes: bytes
):
    populate(tmp_path / "old", wine_model_bytes)[0].extensions["tether"].close()
    source = f"sqlite:///{tmp_path / 'old' / 'tether.db'}"
    assert tether("server", "migrate-store", "--from", source, "--to", postgres_url)[0] == 0
    before = dump(postgres_url)
    code, _, err = tether("server", "migrate-store", "--from", source, "--to", postgres_url)
    assert code == 1
    assert "the target database is not empty: models (1 rows)" in err
    assert dump(postgres_url) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "mysql://x/y", "--to", "sqlite:///b.db"], "--from: 'mysql://x/y'"),
        (["--from", "sqlite:///a.db", "--to", "sqlite:/b.db"], "--to: 'sqlite:/b.db'"),
        (["--from", "sqlite:///a.db", "--to", "sqlite:///a.db"], "name the same database"),
        (["--from", "sqlite:///missing.db", "--to", "sqlite:///b.db"], "no SQLite database at"),
        (["--from", "sqlite:///a.db"], "Missing option '--to'"),
        (["--from", "sqlite:///a.db", "--to", "postgresql://x@127.0.0.1:1/db"],
         "cannot connect to postgresql://x@127.0.0.1:1/db"),
    ],
)  # fmt: skip
def test_migrate_store_bad_input(tmp_path: Path, monkeypatch, args: list[str], message: str):
    monkeypatch.chdir(tmp_path)
    with closing(sqlite3.connect(tmp_path / "a.db")):
        pass
    code, _, err = tether("server", "migrate-store", *args)
    assert code in (1, 2)
    assert message in err, err
    assert not (tmp_path / "b.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["migrate", "--database-url", "mysql://x/y"], "expected sqlite:///PATH or postgresql"),
        (["migrate", "--database-url", "postgresql://x@127.0.0.1:1/db"], "cannot connect to"),
        (["migrate", "--database-url", "postgresql://x:secret@127.0.0.1:1/db"], "x:***@"),
        (["backup", "--out", "b.db"], "no database at"),
        (["backup"], "Missing option '--out'"),
        (["--port", "0", "migrate", "--json", "--nope"], "No such option '--nope'"),
    ],
)
def test_migrate_and_backup_bad_input(tmp_path: Path, monkeypatch, args: list[str], message: str):
    monkeypatch.chdir(tmp_path)
    code, _, err = tether("server", "--data-dir", str(tmp_path / "data"), *args)
    assert code in (1, 2)
    assert message in err, err
    assert "secret" not in err
    assert not (tmp_path / "b.db").exists()


def test_backup_names_a_missing_directory_and_an_existing_file(tmp_path: Path):
    data = tmp_path / "data"
    assert tether("server", "migrate", "--data-dir", str(data))[0] == 0
    code, _, err = tether("server", "backup", "--data-dir", str(data),
                          "--out", str(tmp_path / "no" / "b.db"))  # fmt: skip
    assert (code, err.strip()) == (
        1,
        f"Error: no directory {tmp_path / 'no'} to write the backup in",
    )
    (tmp_path / "b.db").write_bytes(b"keep me")
    code, _, err = tether(
        "server", "backup", "--data-dir", str(data), "--out", str(tmp_path / "b.db")
    )
    assert code == 1 and "exists already" in err
    assert (tmp_path / "b.db").read_bytes() == b"keep me"


def test_migrate_on_postgresql_makes_the_first_token_once(tmp_path: Path, postgres_server):
    url = postgres_server.create_database("fresh_migrate")
    code, out, err = tether("server", "migrate", "--database-url", url,
                            "--data-dir", str(tmp_path), "--json")  # fmt: skip
    assert code == 0, err
    first = json.loads(out)
    assert first["applied"] and first["admin_token"].startswith("tether_admin_")
    assert (tmp_path / "admin.token").read_text().strip() == first["admin_token"]
    assert (tmp_path / "admin.token").stat().st_mode & 0o777 == 0o600
    code, out, _ = tether("server", "migrate", "--database-url", url, "--data-dir", str(tmp_path))
    assert code == 0 and "is up to date" in out and "tether_admin_" not in out


def test_a_replica_refuses_a_database_that_was_never_migrated(tmp_path: Path, postgres_server):
    url = postgres_server.create_database("never_migrated")
    done = subprocess.run(
        [*TETHER, "server", "--data-dir", str(tmp_path), "--database-url", url, "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "will not start" in done.stderr
    assert f"run: tether server migrate --database-url '{url}'" in done.stderr


@pytest.mark.e2e
def test_backup_while_serving_is_consistent_and_a_server_starts_on_it(
    tmp_path: Path, wine_model_bytes: bytes
):
    with ServerProcess(tmp_path / "live") as live:
        operator = Operator.of(live)
        operator.environment("production")
        operator.push("wine", wine_model_bytes)
        operator.push("wine", wine_model_bytes + b"2")
        stop = threading.Event()

        def keep_writing() -> None:
            version = 1
            while not stop.is_set():
                operator.desire("production", "wine", version)
                version = 3 - version

        writer = threading.Thread(target=keep_writing)
        writer.start()
        (tmp_path / "restored").mkdir()
        try:
            done = subprocess.run(
                [*TETHER, "server", "backup", "--data-dir", str(live.data_dir),
                 "--out", str(tmp_path / "restored" / "tether.db"), "--json"],
                capture_output=True, text=True, timeout=60, cwd=tmp_path,
            )  # fmt: skip
        finally:
            stop.set()
            writer.join()
        operator.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bytes"] > 0
    backup = tmp_path / "restored" / "tether.db"
    assert backup.stat().st_mode & 0o777 == 0o600
    with closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        revisions = [row[0] for row in conn.execute("SELECT revision FROM history ORDER BY id")]
    assert revisions == list(range(1, len(revisions) + 1))  # a gapless prefix of the history
    # The backup is a data dir a server starts on, with the old token and keys beside it.
    for name in ("admin.token", "session.key", "keys"):
        subprocess.run(["cp", "-a", str(live.data_dir / name), str(tmp_path / "restored")],
                       check=True)  # fmt: skip
    with ServerProcess(tmp_path / "restored") as restored:
        operator = Operator.of(restored)
        assert operator.revision("production") == len(revisions)
        operator.close()


def test_pg_dump_and_restore_keep_a_postgresql_store(
    tmp_path: Path, postgres_server: LocalPostgres, wine_model_bytes: bytes
):
    # The procedure docs/scale-out.md gives, "Backups": pg_dump -Fc, then pg_restore.
    url = postgres_server.create_database("dumped")
    assert tether("server", "migrate", "--database-url", url, "--data-dir", str(tmp_path))[0] == 0
    app = create_app({"data_dir": tmp_path, "database_url": url})
    api = Api(app.test_client(), (tmp_path / "admin.token").read_text().strip())
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes)
    api.set_desired("production", "wine", 1)
    app.extensions["tether"].close()
    dump_file = tmp_path / "tether.dump"
    subprocess.run([str(postgres_server.bin / "pg_dump"), "-Fc", "-f", str(dump_file), url],
                   check=True)  # fmt: skip
    restored = postgres_server.create_database("restored")
    subprocess.run([str(postgres_server.bin / "pg_restore"), "--no-owner", "-d", restored,
                    str(dump_file)], check=True)  # fmt: skip
    assert dump(restored) == dump(url)
    app = create_app({"data_dir": tmp_path, "database_url": restored})
    try:
        api = Api(app.test_client(), api.token)
        assert api.operator.revision("production") == 1
        api.operator.push("wine", wine_model_bytes + b"2")
        assert api.set_desired("production", "wine", 2).status_code == 200
    finally:
        app.extensions["tether"].close()


def test_an_older_postgresql_than_supported_is_refused_by_name(
    tmp_path: Path, postgres_url: str, monkeypatch
):
    import control_plane.store.postgres as postgres

    monkeypatch.setattr(postgres, "MINIMUM_SERVER_VERSION", 990000)
    code, _, err = tether("server", "migrate", "--database-url", postgres_url,
                          "--data-dir", str(tmp_path))  # fmt: skip
    assert code == 1
    assert "runs PostgreSQL 15." in err and "Tether needs 99 or newer" in err
    assert not (tmp_path / "admin.token").exists()
