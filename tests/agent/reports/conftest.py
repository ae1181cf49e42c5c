"""Fixtures: two real wine classifiers, loaded as the agent loads them."""

from __future__ import annotations

import joblib
import pytest

from agent.serving.runtime import load_model
from common.digests import sha256_file
from tests.support.models import train_wine


@pytest.fixture(scope="session")
def wine_pair(tmp_path_factory):
    """Two real wine classifiers: v1 and a slightly different v2."""
    folder = tmp_path_factory.mktemp("pair")
    loaded = []
    for version, c in ((1, 1.0), (2, 0.05)):
        path = folder / f"v{version}.joblib"
        joblib.dump(train_wine(c=c), path)
        loaded.append(
            load_model(
                path, name="wine", version=version, sha256=sha256_file(path), format="joblib"
            )
        )
    return loaded
