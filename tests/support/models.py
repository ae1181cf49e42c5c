"""Small real scikit-learn models trained on bundled datasets, saved as artifacts."""

from __future__ import annotations

from pathlib import Path

import joblib
import pandas as pd
from sklearn.datasets import load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def wine_frame() -> tuple[pd.DataFrame, pd.Series]:
    data = load_wine(as_frame=True)
    return data.data, data.target


def train_wine(max_iter: int = 500, c: float = 1.0):
    """Train a wine classifier; different `c` gives a different but similar model."""
    features, target = wine_frame()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=c))
    model.fit(features, target)
    return model


def save_model(model, path: Path) -> Path:
    joblib.dump(model, path)
    return path


def iris_model():
    data = load_iris(as_frame=True)
    return LogisticRegression(max_iter=300).fit(data.data, data.target)
