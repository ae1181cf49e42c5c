"""Fixtures: real scikit-learn models saved in both formats, slots and the inference app."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest
import skops.io

from agent.serving.app import create_inference_app
from agent.serving.runtime import LoadedModel, load_model
from agent.serving.slots import Deployed, ModelSlots
from common.digests import sha256_file
from tests.agent.serving.support import diabetes_frame, schema_of, train_diabetes
from tests.support.models import train_wine, wine_frame

MAX_ROWS = 5


@pytest.fixture(scope="session")
def wine_estimator():
    return train_wine()


@pytest.fixture(scope="session")
def diabetes_estimator():
    return train_diabetes()


@pytest.fixture(scope="session")
def wine_rows() -> list[dict]:
    return wine_frame()[0].iloc[:3].to_dict("records")


@pytest.fixture(scope="session")
def diabetes_rows() -> list[dict]:
    return diabetes_frame()[0].iloc[:3].to_dict("records")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, wine_estimator, diabetes_estimator) -> dict[str, Path]:
    """Each model saved with joblib and with skops."""
    folder = tmp_path_factory.mktemp("serving-artifacts")
    paths = {}
    for name, estimator in (("wine", wine_estimator), ("diabetes", diabetes_estimator)):
        paths[f"{name}.joblib"] = folder / f"{name}.joblib"
        joblib.dump(estimator, paths[f"{name}.joblib"])
        paths[f"{name}.skops"] = folder / f"{name}.skops"
        skops.io.dump(estimator, paths[f"{name}.skops"])
    return paths


def load(artifacts: dict[str, Path], name: str, fmt: str, version: int = 1) -> LoadedModel:
    path = artifacts[f"{name}.{fmt}"]
    frame = wine_frame()[0] if name == "wine" else diabetes_frame()[0]
    return load_model(
        path,
        name=name,
        version=version,
        sha256=sha256_file(path),
        format=fmt,
        input_schema=schema_of(frame),
    )


@pytest.fixture
def wine(artifacts) -> LoadedModel:
    return load(artifacts, "wine", "joblib")


@pytest.fixture
def diabetes(artifacts) -> LoadedModel:
    return load(artifacts, "diabetes", "skops", version=2)


@pytest.fixture
def slots(wine, diabetes) -> ModelSlots:
    slots = ModelSlots()
    slots.swap("wine", Deployed(wine, None))
    slots.swap("diabetes", Deployed(diabetes, None))
    return slots


class Calls:
    """Count the calls that reach each model, and the prediction events."""

    def __init__(self, monkeypatch, slots: ModelSlots) -> None:
        self.models: dict[str, int] = {}
        self.events: list = []
        self.feedback: list = []
        for name, deployed in slots.snapshot().items():
            self.models[name] = 0
            monkeypatch.setattr(deployed.primary, "predict_frame", self._counting(name, deployed))

    def _counting(self, name, deployed):
        original = deployed.primary.predict_frame

        def predict_frame(*args, **kwargs):
            self.models[name] += 1
            return original(*args, **kwargs)

        return predict_frame

    @property
    def total(self) -> int:
        return sum(self.models.values())


@pytest.fixture
def calls(monkeypatch, slots) -> Calls:
    return Calls(monkeypatch, slots)


@pytest.fixture
def ready() -> dict[str, bool]:
    return {"ready": True}


@pytest.fixture
def app(slots, calls, ready):
    return create_inference_app(
        slots,
        is_ready=lambda: ready["ready"],
        on_prediction=calls.events.append,
        on_feedback=calls.feedback.extend,
        max_batch_rows=MAX_ROWS,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def client(app):
    return app.test_client()
