"""Fixtures: an app on a temp database, its test client, an admin API helper, real artifacts,
and the root logger put back after a test that configures logging."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest

from control_plane.app import create_app
from tests.support.api import Api
from tests.support.models import train_wine

# Fixtures several suites share, registered once (never imported into a conftest).
pytest_plugins = [
    "tests.support.agent_world",
    "tests.support.nginx",
    "tests.support.postgres",
    "tests.support.s3",
]


@pytest.fixture
def app(tmp_path: Path):
    application = create_app({"data_dir": tmp_path / "control-plane"})
    yield application
    application.extensions["tether"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_token(app) -> str:
    return app.extensions["tether"].new_admin_token


@pytest.fixture
def api(client, admin_token) -> Api:
    return Api(client, admin_token)


@pytest.fixture(scope="session")
def wine_model_file(tmp_path_factory) -> Path:
    """A real scikit-learn classifier of the wine dataset, saved with joblib."""
    path = tmp_path_factory.mktemp("artifacts") / "wine.joblib"
    joblib.dump(train_wine(), path)
    return path


@pytest.fixture(scope="session")
def wine_model_bytes(wine_model_file: Path) -> bytes:
    return wine_model_file.read_bytes()


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """Give the test the root logger and put it back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
