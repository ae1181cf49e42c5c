"""Speak the Open Inference Protocol (v2): tensors to rows, predictions to tensors, metadata.

Two request layouts are accepted: one tensor per feature (named after the feature, shape [N]
or [N, 1]) or a single 2-D tensor of shape [N, n_features] with columns in the model's
feature order. Tensor data may be flat (row-major) or nested exactly as its shape, as the
protocol allows; each number must fit the tensor's datatype (INT8 holds -128 to 127, FP32 no
more than 3.4e38), and BOOL data must be booleans.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from agent.serving.runtime.errors import BatchTooLarge, InvalidInput
from agent.serving.runtime.model import LoadedModel, Prediction
from agent.serving.runtime.validation import describe
from common.schemas import FeatureType

FLOATS = frozenset({"FP16", "FP32", "FP64"})
INTEGERS = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
DATATYPES = FLOATS | INTEGERS | {"BOOL", "BYTES"}
# The tensor datatypes a feature of each schema type may arrive in; values are checked after.
ACCEPTED = {
    FeatureType.number: FLOATS | INTEGERS,
    FeatureType.integer: INTEGERS | FLOATS,
    FeatureType.string: frozenset({"BYTES"}),
    FeatureType.boolean: frozenset({"BOOL"}),
}
DATATYPE_OF = {
    FeatureType.number: "FP64",
    FeatureType.integer: "INT64",
    FeatureType.string: "BYTES",
    FeatureType.boolean: "BOOL",
}
OUTPUTS = ("predict", "predict_proba")
# The values each numeric datatype holds: data outside is refused, never wrapped or rounded.
RANGES: dict[str, tuple[float, float]] = {
    **{f"INT{bits}": (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (0, 2**bits - 1) for bits in (8, 16, 32, 64)},
    "FP16": (-65504.0, 65504.0),
    "FP32": (-3.4028234663852886e38, 3.4028234663852886e38),
    "FP64": (-sys.float_info.max, sys.float_info.max),
}
_NUMBERS = frozenset({int, float})


def rows_from_inputs(model: LoadedModel, inputs: Any, *, max_rows: int) -> list[dict[str, Any]]:
    """Return one dict per row from the request's `inputs`, or raise InvalidInput."""
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("'inputs' must be a non-empty array of tensors")
    tensors = [_read_tensor(index, tensor) for index, tensor in enumerate(inputs)]
    names = model.feature_names
    types = {f.name: FeatureType(f.type) for f in model.input_schema or ()}
    first = tensors[0]
    if len(tensors) == 1 and len(first.shape) == 2 and (names is None or first.name not in names):
        return _rows_from_matrix(first, names, types, max_rows)
    return _rows_from_columns(tensors, names, types, max_rows)


def output_tensors(
    model: LoadedModel, prediction: Prediction, requested: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Return the response's output tensors: `predict`, and `predict_proba` for classifiers."""
    wanted = requested if requested is not None else OUTPUTS
    outputs: list[dict[str, Any]] = []
    if "predict" in wanted:
        values = prediction.predictions
        data, width = _flatten_rows(values)
        shape = [len(values)] if width is None else [len(values), width]
        outputs.append(
            {"name": "predict", "datatype": _datatype(data), "shape": shape, "data": data}
        )
    if "predict_proba" in wanted and prediction.probabilities is not None:
        rows = prediction.probabilities
        outputs.append(
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [len(rows), len(rows[0]) if rows else 0],
                "data": [value for row in rows for value in row],
                "parameters": {"classes": prediction.classes},
            }
        )
    return outputs


def requested_outputs(model: LoadedModel, outputs: Any) -> list[str] | None:
    """Return the output names a request asks for (None: all), or raise InvalidInput."""
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise InvalidInput("'outputs' must be an array of objects with a 'name'")
    available = OUTPUTS if model.has_probabilities else OUTPUTS[:1]
    names = [o["name"] for o in outputs]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InvalidInput(
            f"unknown output {', '.join(repr(n) for n in unknown)} for model {model.name!r} "
            f"(available: {', '.join(available)})"
        )
    return names


class _Tensor:
    __slots__ = ("data", "datatype", "name", "shape")

    def __init__(self, name: str, shape: list[int], datatype: str, data: list[Any]) -> None:
        self.name, self.shape, self.datatype, self.data = name, shape, datatype, data


def _read_tensor(index: int, tensor: Any) -> _Tensor:
    if not isinstance(tensor, dict):
        raise InvalidInput(f"inputs[{index}] must be an object with name, shape, datatype, data")
    name = tensor.get("name")
    label = f"input {name!r}" if isinstance(name, str) else f"inputs[{index}]"
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{label}: 'name' must be a non-empty string")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise InvalidInput(f"{label}: 'shape' must be an array of non-negative integers")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInput(
            f"{label}: unknown datatype {datatype!r} (use one of {', '.join(sorted(DATATYPES))})"
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        raise InvalidInput(f"{label}: 'data' must be an array")
    kinds = set(map(type, data))  # one pass in C serves the checks below
    if list in kinds:
        data = _flatten(label, data, shape)
        kinds = set(map(type, data))
    expected = math.prod(shape)
    if len(data) != expected:
        raise InvalidInput(
            f"{label}: shape {shape} holds {expected} values but 'data' has {len(data)}"
        )
    _check_values(label, datatype, data, kinds)
    return _Tensor(name, shape, datatype, data)


def _rows_from_matrix(
    tensor: _Tensor, names: list[str] | None, types: dict[str, FeatureType], max_rows: int
) -> list[dict[str, Any]]:
    label = f"input {tensor.name!r}"
    if names is None:
        raise InvalidInput(
            f"{label}: this model has no input schema, so columns cannot be named: "
            "send one tensor per feature"
        )
    rows, width = tensor.shape
    if width != len(names):
        raise InvalidInput(
            f"{label}: shape {tensor.shape} has {width} columns but the model has "
            f"{len(names)} features ({', '.join(names)})"
        )
    _check_rows(rows, max_rows)
    for name in names:
        _check_datatype(label, tensor.datatype, name, types)
    data = tensor.data
    return [dict(zip(names, data[i * width : (i + 1) * width], strict=True)) for i in range(rows)]


def _rows_from_columns(
    tensors: list[_Tensor], names: list[str] | None, types: dict[str, FeatureType], max_rows: int
) -> list[dict[str, Any]]:
    seen: dict[str, _Tensor] = {}
    for tensor in tensors:
        label = f"input {tensor.name!r}"
        if tensor.name in seen:
            raise InvalidInput(f"{label} appears more than once")
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(
                f"{label}: shape {tensor.shape} is not one value per row: use [N] or [N, 1] for "
                "a feature, or send a single 2-D tensor [N, n_features]"
            )
        _check_datatype(label, tensor.datatype, tensor.name, types)
        seen[tensor.name] = tensor
    if names is not None:
        unknown = [n for n in seen if n not in names]
        if unknown:
            raise InvalidInput(f"unknown feature{_s(unknown)} {_quoted(unknown)}")
        missing = [n for n in names if n not in seen]
        if missing:
            raise InvalidInput(f"missing feature{_s(missing)} {_quoted(missing)}")
    counts = {tensor.shape[0] for tensor in tensors}
    if len(counts) > 1:
        sizes = ", ".join(f"{t.name!r}: {t.shape[0]}" for t in tensors)
        raise InvalidInput(f"inputs have different numbers of rows ({sizes})")
    rows = counts.pop()
    _check_rows(rows, max_rows)
    order = names if names is not None else list(seen)
    columns = [seen[name].data for name in order]
    return [dict(zip(order, values, strict=True)) for values in zip(*columns, strict=True)]


def _check_datatype(label: str, datatype: str, feature: str, types: dict[str, FeatureType]) -> None:
    kind = types.get(feature)
    if kind is not None and datatype not in ACCEPTED[kind]:
        raise InvalidInput(
            f"{label}: datatype {datatype} does not fit feature {feature!r} of type "
            f"{kind.value} (send {DATATYPE_OF[kind]})"
        )


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise InvalidInput("empty batch: send at least one row")
    if rows > max_rows:
        raise BatchTooLarge(f"batch of {rows} rows is over the limit of {max_rows} rows")


def _flatten(label: str, data: list[Any], shape: list[int]) -> list[Any]:
    """Return nested `data` row-major and flat, if it is nested exactly as `shape`."""
    level = [data]
    for depth, size in enumerate(shape):
        inner: list[Any] = []
        for item in level:
            if type(item) is not list or len(item) != size:
                raise InvalidInput(
                    f"{label}: nested 'data' must follow shape {shape}: at depth {depth} "
                    f"each array must hold {size} items, got {_described(item)}"
                )
            inner.extend(item)
        level = inner
    if list in set(map(type, level)):
        raise InvalidInput(
            f"{label}: 'data' is nested deeper than its shape {shape}: send it flat or "
            f"nested {len(shape)} deep"
        )
    return level


def _described(item: Any) -> str:
    return f"{len(item)}" if type(item) is list else describe(item)


def _check_values(label: str, datatype: str, data: list[Any], kinds: set[type]) -> None:
    """Raise InvalidInput unless each number fits `datatype` (and BOOL holds booleans).

    `kinds` are the types in `data`. Values of other kinds in a numeric tensor are left to the
    row validation, which names the feature they belong to.
    """
    if datatype == "BYTES" or (datatype == "FP64" and int not in kinds):
        return  # every float is an FP64
    if datatype == "BOOL":
        if kinds - {bool}:
            index, value = next((i, v) for i, v in enumerate(data) if type(v) is not bool)
            raise InvalidInput(
                f"{label}: BOOL data must be true or false, got {describe(value)} at data[{index}]"
            )
        return
    low, high = RANGES[datatype]
    numbers = data if kinds <= _NUMBERS else [v for v in data if type(v) in _NUMBERS]
    whole = datatype in INTEGERS and float in kinds
    # min and max run in C: the loop below only runs to name the value once one is wrong.
    if not numbers or (not whole and low <= min(numbers) and max(numbers) <= high):
        return
    for index, value in enumerate(data):
        if type(value) not in _NUMBERS:
            continue
        if datatype in INTEGERS and type(value) is float and not value.is_integer():
            raise InvalidInput(
                f"{label}: {datatype} data must be whole numbers, got {describe(value)} at "
                f"data[{index}]"
            )
        # An infinity or NaN is a float of every width; only a finite value can overflow one.
        if (type(value) is int or math.isfinite(value)) and not low <= value <= high:
            raise InvalidInput(
                f"{label}: {describe(value)} at data[{index}] is out of the range of {datatype} "
                f"({_shown(low)} to {_shown(high)})"
            )


def _shown(bound: float) -> str:
    return f"{bound:.8g}" if type(bound) is float else str(bound)


def _flatten_rows(values: list[Any]) -> tuple[list[Any], int | None]:
    """Flatten per-row outputs of multi-output models, returning the width of a row."""
    if values and isinstance(values[0], list):
        return [v for row in values for v in row], len(values[0])
    return values, None


def _datatype(data: list[Any]) -> str:
    if all(type(v) is bool for v in data):
        return "BOOL"
    if all(type(v) is int for v in data):
        return "INT64"
    if all(type(v) in (int, float) for v in data):
        return "FP64"
    return "BYTES"


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _s(items: list[Any]) -> str:
    return "s" if len(items) != 1 else ""


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    """Return the Open Inference Protocol metadata of a loaded model."""
    if model.input_schema is not None:
        inputs = [
            {"name": f.name, "datatype": DATATYPE_OF[FeatureType(f.type)], "shape": [-1]}
            for f in model.input_schema
        ]
    else:  # names the estimator was fitted on; scikit-learn features are numbers by default
        inputs = [
            {"name": name, "datatype": "FP64", "shape": [-1]} for name in model.feature_names or ()
        ]
    if model.kind == "classifier":
        classes = model.classes or []
        if all(type(c) is int for c in classes):
            label_type = "INT64"
        elif all(type(c) is bool for c in classes):
            label_type = "BOOL"
        else:
            label_type = "BYTES"
    else:
        label_type = "FP64"
    outputs = [{"name": "predict", "datatype": label_type, "shape": [-1]}]
    if model.has_probabilities:
        width = len(model.classes) if model.classes is not None else -1
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, width]})
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": "sklearn",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {
            "kind": model.kind,
            "format": model.format,
            "sha256": model.sha256,
            "classes": model.classes,
        },
    }
