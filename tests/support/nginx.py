"""A real nginx over TLS for the tests, with a throwaway CA, in front of given replicas.

Without nginx installed the tests that need it skip, except in CI, where `.ci/run` installs
it and a missing nginx is a failure (as tests/support/postgres.py does for PostgreSQL).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from scripts.cluster.nginx import LocalNginx, NginxSite, nginx_binary
from scripts.cluster.pki import PkiFiles, write_pki
from tests.support.processes import free_port


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PkiFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and localhost, a client certificate."""
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def nginx_installed() -> None:
    if nginx_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed, and CI must test through it")
        pytest.skip("nginx is not installed (apt-get install nginx)")


@pytest.fixture
def start_nginx(nginx_installed, pki, tmp_path) -> Iterator[Callable[..., LocalNginx]]:
    """Start nginx over TLS in front of `replicas` (HOST:PORT); stopped after the test."""
    started: list[LocalNginx] = []

    def start(replicas: Sequence[str], *, require_client_cert: bool = False) -> LocalNginx:
        site = NginxSite(
            replicas=list(replicas),
            port=free_port(),
            cert=pki.server_cert,
            key=pki.server_key,
            client_ca=pki.ca_cert if require_client_cert else None,
            require_client_cert=require_client_cert,
        )
        nginx = LocalNginx(site, Path(tmp_path) / f"nginx-{len(started)}")
        started.append(nginx)
        return nginx.start()

    yield start
    for nginx in started:
        nginx.stop()
