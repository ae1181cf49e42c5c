"""Check a freshly loaded model on its input example before it may serve."""

from __future__ import annotations

import math
import numbers
from typing import Any

from agent.serving.runtime.errors import InvalidInput, PredictFailed, SmokeTestFailed
from agent.serving.runtime.model import LoadedModel, Prediction


def smoke_test(model: LoadedModel, example: list[dict[str, Any]] | None) -> None:
    """Raise SmokeTestFailed unless the model gives sane output for its input example.

    Sane means one output per row; finite numbers from a regressor; known labels from a
    classifier, with finite probabilities, one per class. No example means nothing to check.
    """
    if not example:
        return
    where = f"model {model.name!r} v{model.version}: smoke test"
    try:
        rows = model.validate(example, max_rows=max(len(example), 1))
    except InvalidInput as exc:
        raise SmokeTestFailed(f"{where}: input example does not fit the model: {exc}") from exc
    try:
        prediction = model.predict(rows)
    except PredictFailed as exc:
        raise SmokeTestFailed(f"{where}: {exc}") from exc
    problem = check_prediction(model, prediction, len(rows))
    if problem is not None:
        raise SmokeTestFailed(f"{where}: {problem}")


def check_prediction(model: LoadedModel, prediction: Prediction, rows: int) -> str | None:
    """Return what is wrong with a prediction for `rows` rows, or None if it is sane."""
    outputs = prediction.predictions
    if len(outputs) != rows:
        return f"{rows} input rows gave {len(outputs)} predictions"
    if model.kind == "regressor":
        for index, value in enumerate(outputs):
            for number in value if isinstance(value, list) else [value]:
                if not _is_finite_number(number):
                    return f"row {index}: prediction {number!r} is not a finite number"
        return None
    known = set(model.classes) if model.classes is not None else None
    if known is not None:
        for index, label in enumerate(outputs):
            if _hashable(label) not in known:
                classes = sorted(known, key=str)
                return f"row {index}: predicted label {label!r} is not one of the classes {classes}"
    if prediction.probabilities is not None:
        probabilities = prediction.probabilities
        if len(probabilities) != rows:
            return f"{rows} input rows gave {len(probabilities)} rows of probabilities"
        width = len(model.classes) if model.classes is not None else None
        for index, row in enumerate(probabilities):
            if width is not None and len(row) != width:
                return f"row {index}: {len(row)} probabilities for {width} classes"
            for value in row:
                if not _is_finite_number(value):
                    return f"row {index}: probability {value!r} is not a finite number"
    return None


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
