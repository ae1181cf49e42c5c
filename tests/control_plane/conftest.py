"""The control plane's API suites run on both stores: the embedded SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.app import create_app
from tests.support.postgres import postgres_app_config


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def app(tmp_path: Path, backend: str, request):
    data_dir = tmp_path / "control-plane"
    if backend == "sqlite":
        application = create_app({"data_dir": data_dir})
    else:
        config, token = postgres_app_config(request.getfixturevalue("postgres_url"), data_dir)
        application = create_app(config)
        application.extensions["tether"].new_admin_token = token
    yield application
    application.extensions["tether"].close()
