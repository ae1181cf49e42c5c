"""A regressor that takes as long as its input asks: holds a request in flight on purpose.

It lives in an importable module so a real agent process can unpickle it.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class SlowRegressor(RegressorMixin, BaseEstimator):
    """Predict 1.0 per row after sleeping for the largest `sleep` feature of the batch."""

    def __init__(self) -> None:
        self.feature_names_in_ = np.array(["x", "sleep"], dtype=object)
        self.n_features_in_ = 2

    def predict(self, X):  # type: ignore[no-untyped-def]
        delay = float(np.max(np.asarray(X)[:, 1])) if len(X) else 0.0
        time.sleep(min(delay, 30.0))
        return np.ones(len(X))
