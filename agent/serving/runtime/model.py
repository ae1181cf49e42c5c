"""Load an artifact into a model that predicts on validated rows, whatever its format."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline

from agent.serving.runtime import joblib_format, skops_format
from agent.serving.runtime.errors import LoadFailed, PredictFailed, UnsupportedFormat
from agent.serving.runtime.validation import DEFAULT_MAX_ROWS, RowValidator
from common.schemas import Feature, FeatureType

Loader = Callable[[Path], Any]

# One entry per format: adding a format is one module with a `load(path)` and one line here.
FORMATS: dict[str, Loader] = {
    joblib_format.NAME: joblib_format.load,
    skops_format.NAME: skops_format.load,
}

_DTYPES = {
    FeatureType.number: np.float64,
    FeatureType.integer: np.int64,
    FeatureType.boolean: np.bool_,
    FeatureType.string: object,
}


@dataclass(frozen=True)
class Prediction:
    """A model's output for a batch: one prediction per row, and probabilities for classifiers."""

    predictions: list[Any]
    probabilities: list[list[float]] | None
    classes: list[Any] | None


def load_model(
    path: Path,
    *,
    name: str,
    version: int,
    sha256: str,
    format: str,
    input_schema: list[Feature] | None = None,
) -> LoadedModel:
    """Load the artifact at `path` in the given format.

    The caller must already have verified the file's sha256 against the signed manifest:
    `joblib` files are pickles and are safe to load only because of that check. `skops`
    files are loaded with skops' trusted-types check on top (see `skops_format`).
    """
    loader = FORMATS.get(format)
    if loader is None:
        raise UnsupportedFormat(
            f"model {name!r} v{version}: unsupported artifact format {format!r} "
            f"(supported: {', '.join(sorted(FORMATS))})"
        )
    try:
        estimator = loader(Path(path))
    except LoadFailed as exc:
        exc.args = (f"model {name!r} v{version}: {exc}",)  # name the model, keep the type
        raise
    except Exception as exc:
        raise LoadFailed(
            f"model {name!r} v{version}: could not load {format} artifact: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return LoadedModel(
        estimator,
        name=name,
        version=version,
        sha256=sha256,
        format=format,
        input_schema=input_schema,
    )


class LoadedModel:
    """An estimator in memory with what is needed to feed it rows and describe its output."""

    def __init__(
        self,
        estimator: Any,
        *,
        name: str,
        version: int,
        sha256: str,
        format: str,
        input_schema: Sequence[Feature] | None = None,
    ) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise LoadFailed(
                f"model {name!r} v{version}: {type(estimator).__name__} has no predict method"
            )
        self.estimator = estimator
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.format = format
        self.input_schema: list[Feature] | None = (
            list(input_schema) if input_schema is not None else None
        )
        self.kind: Literal["classifier", "regressor"] = (
            "classifier" if _is_classifier(estimator) else "regressor"
        )
        classes = getattr(estimator, "classes_", None) if self.kind == "classifier" else None
        self.classes: list[Any] | None = (
            np.asarray(classes).tolist() if classes is not None else None
        )
        self.has_probabilities = self.kind == "classifier" and hasattr(estimator, "predict_proba")
        self.feature_names, self._wants_frame = self._column_order()
        self.validator = RowValidator(self.input_schema, self.feature_names)
        self._plan_input()
        self._head: Any
        self._tail: Any
        self._head, self._tail = (
            _split_pipeline(estimator) if self.has_probabilities else (None, None)
        )

    def __repr__(self) -> str:
        return f"<LoadedModel {self.name} v{self.version} {self.kind} {self.format}>"

    def validate(self, rows: Any, *, max_rows: int = DEFAULT_MAX_ROWS) -> list[dict[str, Any]]:
        """Return `rows` if they fit this model's inputs, else raise InvalidInput."""
        return self.validator.validate(rows, max_rows=max_rows)

    def predict(self, rows: list[dict[str, Any]], *, probabilities: bool = True) -> Prediction:
        """Predict on rows already validated against the input schema."""
        return self.predict_frame(self.to_input(rows), probabilities=probabilities)

    def predict_frame(self, frame: Any, *, probabilities: bool = True) -> Prediction:
        """Predict on a DataFrame or 2-D array already in the estimator's column order."""
        proba = None
        try:
            if probabilities and self.has_probabilities:
                if self._head is not None:
                    # One pass through the transformers serves both outputs.
                    transformed = self._head.transform(frame)
                    labels = self._tail.predict(transformed)
                    proba = self._tail.predict_proba(transformed)
                else:
                    labels = self.estimator.predict(frame)
                    proba = self.estimator.predict_proba(frame)
            else:
                labels = self.estimator.predict(frame)
        except Exception as exc:
            raise PredictFailed(
                f"model {self.name!r} v{self.version} failed to predict: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return Prediction(
            predictions=np.asarray(labels).tolist(),
            probabilities=None if proba is None else np.asarray(proba, dtype=np.float64).tolist(),
            classes=self.classes,
        )

    def to_input(self, rows: list[dict[str, Any]]) -> Any:
        """Build the estimator's input: a DataFrame if it was fitted on one, else a 2-D array."""
        columns = self.feature_names if self.feature_names is not None else list(rows[0])
        if self._all_float:
            matrix = np.array([[row[c] for c in columns] for row in rows], dtype=np.float64)
            if not self._wants_frame:
                return matrix
            return pd.DataFrame(matrix, columns=self._index, copy=False)
        if not self._wants_frame:
            matrix = np.array([[row[c] for c in columns] for row in rows])
            if matrix.dtype.kind in "US":  # strings among numbers: keep each value as it is
                matrix = np.array([[row[c] for c in columns] for row in rows], dtype=object)
            return matrix
        if self._dtypes is None:
            return pd.DataFrame({c: [row[c] for row in rows] for c in columns}, columns=columns)
        return pd.DataFrame(
            {c: np.array([row[c] for row in rows], dtype=d) for c, d in self._dtypes},
            columns=self._index,
        )

    def _column_order(self) -> tuple[list[str] | None, bool]:
        """Return the column order the estimator needs and whether it wants a DataFrame."""
        schema_names = [f.name for f in self.input_schema] if self.input_schema else None
        fitted_names = getattr(self.estimator, "feature_names_in_", None)
        if fitted_names is not None:
            # scikit-learn checks names and their order against fit, so its order wins.
            names = [str(n) for n in fitted_names]
            if schema_names is not None and set(schema_names) != set(names):
                differences = [
                    f"{where}: {', '.join(repr(n) for n in sorted(extra))}"
                    for where, extra in (
                        ("only in the schema", set(schema_names) - set(names)),
                        ("only in the model", set(names) - set(schema_names)),
                    )
                    if extra
                ]
                raise LoadFailed(
                    f"model {self.name!r} v{self.version}: input schema does not match the "
                    f"features the model was fitted on ({'; '.join(differences)})"
                )
            return names, True
        expected = getattr(self.estimator, "n_features_in_", None)
        if schema_names is not None and expected is not None and expected != len(schema_names):
            raise LoadFailed(
                f"model {self.name!r} v{self.version}: input schema has {len(schema_names)} "
                f"features but the model was fitted on {expected}"
            )
        return schema_names, False

    def _plan_input(self) -> None:
        """Work out once how rows become the estimator's input, so each request just does it."""
        types = (
            {f.name: FeatureType(f.type) for f in self.input_schema}
            if self.input_schema is not None
            else None
        )
        numeric = (FeatureType.number, FeatureType.integer)
        if types is None:
            self._all_float = False
            self._dtypes = None
        elif self._wants_frame:
            self._all_float = all(t is FeatureType.number for t in types.values())
            self._dtypes = [(name, _DTYPES[types[name]]) for name in self.feature_names or ()]
        else:
            self._all_float = all(t in numeric or t is FeatureType.boolean for t in types.values())
            self._dtypes = None
        self._index = pd.Index(self.feature_names) if self.feature_names is not None else None


def _is_classifier(estimator: Any) -> bool:
    try:
        return bool(is_classifier(estimator))
    except Exception:  # not a scikit-learn estimator: go by its fitted attributes
        return hasattr(estimator, "classes_")


def _split_pipeline(estimator: Any) -> tuple[Any, Any]:
    """Return (transformers, final step) of a pipeline, or (None, None) for anything else."""
    if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
        return None, None
    tail = estimator.steps[-1][1]
    if not hasattr(tail, "predict_proba") or not hasattr(tail, "predict"):
        return None, None
    return estimator[:-1], tail
