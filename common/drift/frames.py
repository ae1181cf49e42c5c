"""Turn the frames, arrays and rows that callers pass into named numpy columns."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype, is_bool_dtype, is_numeric_dtype

PREDICTION = "__prediction__"
"""Reserved name under which predictions are profiled (`__prediction__.<column>` when 2-D)."""

INFINITE = "\x00inf"
"""Key that `category_key` returns for +-inf, which is counted apart from the categories."""

LARGEST = 1e300
"""Numbers beyond +-LARGEST count as infinite: sums and spans of them would overflow float64."""

_NUMERIC_INFERRED = {"integer", "floating", "mixed-integer-float", "decimal"}


class Columns:
    """Named columns of one batch, with the row count and how many rows lacked each name."""

    __slots__ = ("absent", "rows", "values")

    def __init__(
        self, values: dict[str, np.ndarray], rows: int, absent: dict[str, int] | None = None
    ):
        self.values = values
        self.rows = rows
        self.absent = absent or {}


def is_row(frame: Any) -> bool:
    """Tell whether `frame` is a single row: a mapping of names to scalars."""
    if type(frame) is not dict and not isinstance(frame, Mapping):
        return False
    for value in frame.values():
        return not isinstance(value, (list, tuple, np.ndarray, pd.Series))
    return True


def columns_of(frame: Any, names: Sequence[str] | None = None) -> Columns:
    """Return the named columns of a DataFrame, 2-D array, mapping of columns or list of rows."""
    if isinstance(frame, pd.DataFrame):
        labels = [str(c) for c in frame.columns]
        _check_unique(labels)
        return Columns(
            {label: series_values(frame.iloc[:, i]) for i, label in enumerate(labels)}, len(frame)
        )
    if isinstance(frame, np.ndarray):
        return _array_columns(frame, names)
    if isinstance(frame, Mapping):
        if is_row(frame):
            return _rows_columns([frame])
        values = {str(k): _as_array(v) for k, v in frame.items()}
        lengths = {len(v) for v in values.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        return Columns(values, lengths.pop() if lengths else 0)
    if isinstance(frame, Sequence) and not isinstance(frame, (str, bytes)):
        if all(isinstance(row, Mapping) for row in frame):
            return _rows_columns(frame)
        return _array_columns(as_array(frame), names)
    raise TypeError(f"cannot read columns from {type(frame).__name__}")


def series_values(series: pd.Series) -> np.ndarray:
    """Return a Series as float64 (numbers, NaN for missing) or as an object array."""
    dtype = series.dtype
    if dtype == np.float64:
        return series.to_numpy()
    if is_numeric_dtype(dtype) and not is_bool_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy(dtype=object)


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series):
        return series_values(values)
    array = as_array(values)
    if array.ndim != 1:
        raise ValueError(f"a column must be 1-D, got shape {array.shape}")
    return _normalise(array)


def as_array(values: Any) -> np.ndarray:
    """Return values as an array without numpy turning a mix of strings and numbers to strings."""
    array = np.asarray(values)
    if array.dtype.kind in "US" and not isinstance(values, np.ndarray):
        array = np.asarray(values, dtype=object)
    return array


def _normalise(array: np.ndarray) -> np.ndarray:
    # Numbers become float64 so the rest of the code meets only two dtypes.
    if array.dtype.kind in "iuf":
        return array.astype(np.float64, copy=False)
    return array.astype(object, copy=False)


def _array_columns(array: np.ndarray, names: Sequence[str] | None) -> Columns:
    if array.dtype.names:
        labels = list(array.dtype.names)
        return Columns(
            {label: _normalise(np.asarray(array[label])) for label in labels}, len(array)
        )
    if array.ndim != 2:
        raise ValueError(f"a frame must be 2-D, got shape {array.shape}")
    labels = (
        [str(n) for n in names] if names is not None else [str(i) for i in range(array.shape[1])]
    )
    if len(labels) != array.shape[1]:
        raise ValueError(f"{len(labels)} names given for {array.shape[1]} columns")
    _check_unique(labels)
    return Columns(
        {label: _normalise(array[:, i]) for i, label in enumerate(labels)}, array.shape[0]
    )


def _rows_columns(rows: Sequence[Mapping[str, Any]]) -> Columns:
    labels: dict[str, None] = {}
    for row in rows:
        labels.update(dict.fromkeys(str(k) for k in row))
    values: dict[str, np.ndarray] = {}
    absent: dict[str, int] = {}
    for label in labels:
        # A row without the name is absent, which is counted apart from a None value.
        column = [row.get(label, _ABSENT) for row in rows]
        missing = sum(1 for v in column if v is _ABSENT)
        if missing:
            absent[label] = missing
            column = [None if v is _ABSENT else v for v in column]
        array = np.empty(len(column), dtype=object)
        array[:] = column
        values[label] = array
    return Columns(values, len(rows), absent)


def _check_unique(labels: list[str]) -> None:
    duplicated = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicated:
        raise ValueError(f"duplicated column names: {duplicated}")


class _Absent:
    __slots__ = ()


_ABSENT = _Absent()


def looks_numeric(values: np.ndarray) -> bool:
    """Tell whether a column holds numbers (booleans are categories, not numbers)."""
    if values.dtype.kind == "f":
        return True
    return values.dtype == object and infer_dtype(values, skipna=True) in _NUMERIC_INFERRED


def to_float(values: np.ndarray) -> np.ndarray:
    """Return a column as float64; what is not a number becomes NaN and so counts as missing."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    if infer_dtype(values, skipna=True) in _NUMERIC_INFERRED | {"boolean", "empty"}:
        try:
            return np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            pass
    # Strings are never parsed as numbers, so that rows and batches count them alike (as missing).
    return np.fromiter((float_or_nan(v) for v in values), dtype=np.float64, count=len(values))


def float_or_nan(value: Any) -> float:
    """Return a value as a float, NaN when it is missing or not a number (strings included)."""
    if isinstance(value, (str, bytes)):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        return math.nan


def number_key(value: float) -> str:
    """Return the category key of a finite number: integral values print without a fraction."""
    if value.is_integer():
        return str(int(value))
    return repr(value)


def category_key(value: Any) -> str | None:
    """Return the category key of a value, None when missing, `INFINITE` for +-inf."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        if abs(number) > LARGEST:
            return INFINITE
        return number_key(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def category_counts(values: np.ndarray) -> tuple[dict[str, int], int, int]:
    """Count a column's categories; return the counts by key, the missing and the infinite count."""
    if values.dtype.kind in "fiu":
        numbers = values.astype(np.float64, copy=False)
        nan = np.isnan(numbers)
        finite = np.abs(numbers) <= LARGEST
        uniques, counts = np.unique(numbers[finite], return_counts=True)
        keyed = {number_key(float(u)): int(c) for u, c in zip(uniques, counts, strict=True)}
        missing = int(np.count_nonzero(nan))
        return keyed, missing, len(numbers) - missing - int(np.count_nonzero(finite))
    if values.dtype.kind == "b":
        values = values.astype(object)
    if infer_dtype(values, skipna=True) == "string":
        # The common case of plain strings skips the per-value Python keying.
        series = pd.Series(values, dtype=object)
        counted = series.value_counts(dropna=True)
        keyed = {str(k): int(c) for k, c in counted.items()}
        return keyed, len(values) - int(counted.sum()), 0
    tally = Counter(category_key(v) for v in values)
    missing = tally.pop(None, 0)
    infinite = tally.pop(INFINITE, 0)
    return {key: n for key, n in tally.items() if key is not None}, missing, infinite
