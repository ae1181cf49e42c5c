"""A real PostgreSQL for the tests: one server per test process, an emptied database per test.

Each test process migrates one database once; before each test every table is emptied
(TRUNCATE ... RESTART IDENTITY), which takes a few milliseconds where copying a template
database took 130-450 ms. Without PostgreSQL installed the tests that need it skip, except in
CI, where `.ci/run` installs it and a missing server is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.bootstrap import migrate
from control_plane.settings import ControlPlaneSettings
from scripts.cluster.postgres import LocalPostgres, postgres_bin
from tests.support.store import TABLES

DATABASE = "tether_tests"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory, postgres_installed) -> Iterator[LocalPostgres]:
    """A PostgreSQL server for this test process, with a migrated database."""
    server = LocalPostgres(durable=False).start()
    try:
        url = server.create_database(DATABASE)
        scratch = tmp_path_factory.mktemp("pg-schema")
        migrate(ControlPlaneSettings(data_dir=scratch, database_url=url))
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> str:
    """The URL of a migrated database with every table empty, for this test alone."""
    tables = ", ".join(TABLES)
    postgres_server.sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE", database=DATABASE)
    return postgres_server.url(DATABASE)


def postgres_app_config(url: str, data_dir: Path) -> tuple[dict, str]:
    """App config on a PostgreSQL database, and its first admin token (made as migrate does)."""
    settings = ControlPlaneSettings(data_dir=data_dir, database_url=url)
    _, token = migrate(settings)
    assert token is not None
    return {"data_dir": data_dir, "database_url": url}, token


@pytest.fixture(scope="session")
def postgres_installed() -> None:
    """Skip without PostgreSQL's server binaries, except in CI, where they must be there."""
    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed, and CI must test against it")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
