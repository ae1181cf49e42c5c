"""A whole scale-out deployment on one machine: PostgreSQL, N replicas, nginx with TLS.

    root/
      pki/          a throwaway CA, nginx's server certificate, a client certificate
      secrets/      the signing keys and the session key every replica shares
      artifacts/    the artifact store every replica shares (a directory, as a shared mount)
      admin/        where `tether server migrate` wrote the first admin token
      replica-N/    each replica's own data dir (metrics, its log beside it)
      nginx/        nginx's config, logs and temp files

What `make cluster` starts and the cluster tests drive (tests/e2e/test_cluster.py); the layout
is the one docs/scale-out.md deploys on real machines.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scripts.cluster.nginx import LocalNginx, NginxSite
from scripts.cluster.pki import PkiFiles, write_pki
from scripts.cluster.postgres import LocalPostgres, migrate
from scripts.cluster.processes import ServerProcess, free_port

DATABASE = "tether"


@dataclass
class Cluster:
    """Start, use and stop PostgreSQL, `replicas` control planes and nginx under `root`."""

    root: Path
    replicas: int = 3
    port: int | None = None  # nginx's; a free one by default
    policy_interval: int = 10
    require_client_cert: bool = False
    progress: Callable[[str], None] = lambda line: None
    postgres: LocalPostgres | None = None
    servers: list[ServerProcess] = field(default_factory=list)
    nginx: LocalNginx | None = None
    pki: PkiFiles | None = None
    admin_token: str = ""
    database_url: str = ""

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    def start(self) -> Cluster:
        self.root = Path(self.root).absolute()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.progress("starting PostgreSQL (initdb, pg_ctl)")
        self.postgres = LocalPostgres().start()
        self.database_url = self.postgres.create_database(DATABASE)
        self.progress("migrating the schema: tether server migrate")
        self.admin_token = migrate(
            self.database_url,
            self.root / "admin",
            extra_args=["--secrets-dir", str(self.root / "secrets")],
        )
        for index in range(self.replicas):
            self.progress(f"starting replica {index + 1} of {self.replicas}")
            self.servers.append(self._replica(index).start())
        self.progress("making a throwaway CA and certificates; starting nginx")
        self.pki = write_pki(self.root / "pki")
        site = NginxSite(
            replicas=[f"127.0.0.1:{server.port}" for server in self.servers],
            port=self.port or free_port(),
            cert=self.pki.server_cert,
            key=self.pki.server_key,
            client_ca=self.pki.ca_cert if self.require_client_cert else None,
            require_client_cert=self.require_client_cert,
        )
        self.nginx = LocalNginx(site, self.root / "nginx").start()

    def shared_args(self) -> list[str]:
        """What every replica is told alike: the database, the secrets, the artifacts."""
        return [
            "--database-url", self.database_url,
            "--secrets-dir", str(self.root / "secrets"),
        ]  # fmt: skip

    def _replica(self, index: int, port: int | None = None) -> ServerProcess:
        return ServerProcess(
            self.root / f"replica-{index + 1}",
            port=port,
            env={
                "TETHER_ARTIFACT_STORE": str(self.root / "artifacts"),
                "TETHER_POLICY_INTERVAL": str(self.policy_interval),
            },
            extra_args=self.shared_args(),
        )

    def kill(self, index: int) -> None:
        """SIGKILL replica `index` and its workers, as a crash would."""
        self.servers[index].stop(signal.SIGKILL)

    def restart(self, index: int) -> ServerProcess:
        """Start replica `index` again on its port, so nginx finds it where it was."""
        old = self.servers[index]
        old.stop()
        self.servers[index] = self._replica(index, port=old.port).start()
        return self.servers[index]

    def summary(self) -> dict:
        assert self.pki is not None and self.postgres is not None
        return {
            "url": self.url,
            "ca_file": str(self.pki.ca_cert),
            "client_cert": str(self.pki.client_cert),
            "client_key": str(self.pki.client_key),
            "admin_token": self.admin_token,
            "database_url": self.database_url,
            "replicas": [
                {"url": server.url, "pid": server.process.pid if server.process else None,
                 "log": str(server.log_path)}
                for server in self.servers
            ],
            "root": str(self.root),
        }  # fmt: skip

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for server in self.servers:
            server.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
