"""Load model artifacts, check them and predict on validated rows, whatever their format.

    load_model(path, name=, version=, sha256=, format=, input_schema=) -> LoadedModel
    LoadedModel.validate(rows) / .predict(rows) -> Prediction
    smoke_test(model, example)          validate_rows(schema, rows)

Errors, one tree (all in `agent.serving.runtime.errors`):

    RuntimeFailure
     ├── UnsupportedFormat   the artifact format has no loader
     ├── LoadFailed          the file could not be turned into a usable model
     │    └── UntrustedTypes a skops file holds types outside the allow-list
     ├── SmokeTestFailed     the model's output on its input example is wrong
     ├── InvalidInput        request rows break the input schema (never reach the model)
     │    └── BatchTooLarge  more rows than the configured limit
     ├── ModelNotFound       no model of that name is loaded
     └── PredictFailed       the model raised on input that passed validation

A format is one module with `NAME` and `load(path)`, registered in `model.FORMATS`.
"""

from __future__ import annotations

from agent.serving.runtime.errors import (
    BatchTooLarge,
    InvalidInput,
    LoadFailed,
    ModelNotFound,
    PredictFailed,
    RuntimeFailure,
    SmokeTestFailed,
    UnsupportedFormat,
    UntrustedTypes,
)
from agent.serving.runtime.model import FORMATS, LoadedModel, Prediction, load_model
from agent.serving.runtime.smoke import check_prediction, smoke_test
from agent.serving.runtime.validation import DEFAULT_MAX_ROWS, RowValidator, validate_rows

__all__ = [
    "DEFAULT_MAX_ROWS",
    "FORMATS",
    "BatchTooLarge",
    "InvalidInput",
    "LoadFailed",
    "LoadedModel",
    "ModelNotFound",
    "PredictFailed",
    "Prediction",
    "RowValidator",
    "RuntimeFailure",
    "SmokeTestFailed",
    "UnsupportedFormat",
    "UntrustedTypes",
    "check_prediction",
    "load_model",
    "smoke_test",
    "validate_rows",
]
