"""Models and helpers shared by the serving tests."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from agent.serving.runtime import LoadedModel
from common.schemas import Feature


def diabetes_frame() -> tuple[pd.DataFrame, pd.Series]:
    data = load_diabetes(as_frame=True)
    return data.data, data.target


def train_diabetes():
    """Train a regressor on a DataFrame, so it checks feature names like real pipelines do."""
    features, target = diabetes_frame()
    return make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(features, target)


def train_diabetes_on_arrays():
    """Train a regressor on a plain array: it knows no feature names, only their count."""
    features, target = diabetes_frame()
    return Ridge(alpha=1.0).fit(features.to_numpy(), target.to_numpy())


def schema_of(frame: pd.DataFrame) -> list[Feature]:
    return [Feature(name=str(c), type="number") for c in frame.columns]


def wrap(estimator: Any, name: str = "m", version: int = 1, schema=None) -> LoadedModel:
    return LoadedModel(
        estimator, name=name, version=version, sha256="0" * 64, format="joblib", input_schema=schema
    )


class ConstantRegressor(RegressorMixin, BaseEstimator):
    """Predict `value` for every row, optionally waiting on a gate first (to hold a request)."""

    def __init__(self, value: float = 1.0, n_features: int = 2, gate=None, entered=None):
        self.value = value
        self.n_features = n_features
        self.gate = gate
        self.entered = entered
        self.n_features_in_ = n_features

    def predict(self, X):
        if self.entered is not None:
            self.entered.set()
        if self.gate is not None and not self.gate.wait(10):
            raise TimeoutError("gate never opened")
        return np.full(len(X), self.value)


class Gate:
    """A slow model's controls: `entered` is set once a request is inside, `gate` lets it out."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def model(self, value: float, name: str = "slow", version: int = 1) -> LoadedModel:
        estimator = ConstantRegressor(value, gate=self.gate, entered=self.entered)
        return wrap(estimator, name, version, [Feature(name="a"), Feature(name="b")])


def assert_error(response: Any, status: int, *words: str) -> str:
    """Assert the OIP error shape with this status, and that the message names each word."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json() if callable(response.json) else response.json
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    for word in words:
        assert word in body["error"], (word, body["error"])
    return body["error"]
