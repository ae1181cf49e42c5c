"""Build a version's reference profile from its training data, on the operator's machine."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from common.drift import ReferenceProfile, build_profile


class ReferenceDataError(ValueError):
    """The training data for the reference profile cannot be used."""


def read_frame(path: Path) -> Any:
    """Read a CSV or Parquet file into a DataFrame."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(path)
    except (ValueError, OSError, ImportError) as error:
        raise ReferenceDataError(f"cannot read {path}: {error}") from None
    raise ReferenceDataError(f"{path}: use a .csv or .parquet file")


def load_estimator(path: Path, fmt: str) -> Any:
    """Load the user's own model file, to profile its predictions on the training data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a model saved by another sklearn version still predicts
        if fmt == "skops":
            import skops.io as sio

            return sio.load(path, trusted=sio.get_untrusted_types(file=path))
        import joblib

        return joblib.load(path)


def reference_profile(
    model_file: Path, fmt: str, data_path: Path, target: str | None
) -> ReferenceProfile:
    """Profile the training data and the model's predictions on it."""
    frame = read_frame(data_path)
    if target is not None:
        if target not in frame.columns:
            raise ReferenceDataError(f"--target {target!r} is not a column of {data_path}")
        frame = frame.drop(columns=[target])
    if frame.empty:
        raise ReferenceDataError(f"{data_path} has no rows")
    estimator = load_estimator(model_file, fmt)
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        missing = [str(name) for name in names if name not in frame.columns]
        if missing:
            raise ReferenceDataError(f"{data_path} lacks the model's features: {missing[:5]}")
        frame = frame[list(names)]
    try:
        predictions = estimator.predict(frame)
    except Exception as error:  # the data does not fit the model: say so plainly
        raise ReferenceDataError(f"the model cannot predict on {data_path}: {error}") from None
    return build_profile(frame, predictions=predictions)
