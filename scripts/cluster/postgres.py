"""A throwaway PostgreSQL server in a temp dir, from Debian's `postgresql` package.

Used by the tests and by `make cluster`: `initdb` and `pg_ctl` run as the `postgres` user when
we are root (PostgreSQL refuses to run as root; CI runs as root), the server listens on
127.0.0.1 only, with its socket in its own directory, and trusts connections from loopback:
fit for tests and a local cluster, never for production (docs/scale-out.md).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.cluster.processes import free_port

SUPERUSER = "tether"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class LocalPostgres:
    """Start, use and stop one PostgreSQL server that lives in a temp dir."""

    def __init__(self, *, port: int | None = None, durable: bool = True) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL is not installed: apt-get install postgresql (initdb not found "
                "under /usr/lib/postgresql/*/bin)"
            )
        self.bin = bin_dir
        self.port = port or free_port()
        self.durable = durable
        # Not under the caller's (maybe private) temp dir: the postgres user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> LocalPostgres:
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--no-locale", "--no-instructions",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        options += " -c max_connections=300"
        if not self.durable:  # tests: a crash of the test server loses nothing that matters
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def postmaster_pid(self) -> int:
        """The server's first process: every backend and helper process is its child."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the superuser (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement.encode())

    def create_database(self, name: str, template: str | None = None) -> str:
        clause = f" TEMPLATE {template}" if template else ""
        self.sql(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def query(self, statement: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one read-only statement as the superuser and return its rows."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            return list(conn.execute(statement.encode()).fetchall())

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}{log}")

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def migrate(
    url: str, data_dir: Path, python: str = sys.executable, extra_args: Sequence[str] = ()
) -> str:
    """Run `tether server migrate` on an empty database; return the first admin token."""
    command = [python, "-m", "common", "server", "migrate", "--database-url", url, *extra_args]
    done = subprocess.run(
        [*command, "--data-dir", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tether server migrate failed ({done.returncode}): {done.stderr}")
    token = json.loads(done.stdout)["admin_token"]
    if not token:
        raise RuntimeError(f"{url} was migrated before: no first admin token was made")
    return str(token)
