"""Check request rows against a model's input schema before they reach the model."""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.serving.runtime.errors import BatchTooLarge, InvalidInput
from common.schemas import Feature, FeatureType

DEFAULT_MAX_ROWS = 10_000
# JSON numbers have no size limit, but a feature reaches the model as a float64 (`number`) or an
# int64 (`integer`), where numpy raises OverflowError: values past those ranges are refused here.
FLOAT64_MAX = sys.float_info.max
FLOAT64_MAX_INT = int(FLOAT64_MAX)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SHOWN = 10  # names listed in one message before it is cut short
_LONG_INTEGER = 10**24  # an integer this long is described by its length, not written out


def validate_rows(
    schema: Sequence[Feature] | None, rows: Any, *, max_rows: int = DEFAULT_MAX_ROWS
) -> list[dict[str, Any]]:
    """Return `rows` if every row fits the schema, else raise InvalidInput naming the problem.

    Without a schema, rows must be objects of scalars that all have the same keys.
    """
    return RowValidator(schema).validate(rows, max_rows=max_rows)


class RowValidator:
    """Validate rows against one schema, compiled once so each request pays only the checks.

    Without a schema, `feature_names` (those the estimator was fitted on), when known, are
    the only names allowed; otherwise every row must have the keys of the first.
    """

    def __init__(
        self, schema: Sequence[Feature] | None, feature_names: Sequence[str] | None = None
    ) -> None:
        self.schema = list(schema) if schema is not None else None
        self._fitted_names = frozenset(feature_names) if feature_names is not None else None
        self._checks = (
            [(feature.name, _CHECKS[FeatureType(feature.type)]) for feature in self.schema]
            if self.schema is not None
            else None
        )
        self._names: frozenset[str] = frozenset(f.name for f in self.schema or ())

    def validate(self, rows: Any, *, max_rows: int = DEFAULT_MAX_ROWS) -> list[dict[str, Any]]:
        """Return `rows` unchanged if they are valid, else raise InvalidInput."""
        check_batch(rows, max_rows)
        if self._checks is None:
            return _validate_schemaless(rows, self._fitted_names)
        names, checks = self._names, self._checks
        for index, row in enumerate(rows):
            if type(row) is not dict:
                raise InvalidInput(
                    f"row {index} is {describe(row)}, not an object of feature values"
                )
            if row.keys() != names:
                _raise_key_mismatch(index, names, row)
            for name, check in checks:
                problem = check(row[name])
                if problem is not None:
                    raise InvalidInput(f"row {index}: feature {name!r} {problem}")
        return rows


def check_batch(rows: Any, max_rows: int) -> None:
    """Raise InvalidInput unless `rows` is a non-empty list within the size limit."""
    if not isinstance(rows, list):
        raise InvalidInput(f"rows must be a list of objects, got {describe(rows)}")
    if not rows:
        raise InvalidInput("empty batch: send at least one row")
    if len(rows) > max_rows:
        raise BatchTooLarge(f"batch of {len(rows)} rows is over the limit of {max_rows} rows")


def _validate_schemaless(rows: list[Any], names: frozenset[str] | None) -> list[dict[str, Any]]:
    first = rows[0]
    if type(first) is not dict:
        raise InvalidInput(f"row 0 is {describe(first)}, not an object of feature values")
    if not first:
        raise InvalidInput("row 0 has no features")
    keys = names if names is not None else frozenset(first)
    reference = "" if names is not None else "row 0"
    for index, row in enumerate(rows):
        if type(row) is not dict:
            raise InvalidInput(f"row {index} is {describe(row)}, not an object of feature values")
        if row.keys() != keys:
            _raise_key_mismatch(index, keys, row, reference=reference)
        for name, value in row.items():
            if isinstance(value, dict | list | tuple) or value is None:
                raise InvalidInput(
                    f"row {index}: feature {name!r} must be a number, string or boolean, "
                    f"got {describe(value)}"
                )
            if type(value) is int and not -FLOAT64_MAX_INT <= value <= FLOAT64_MAX_INT:
                # Without a schema, numbers still become float64 on the way to the estimator.
                raise InvalidInput(f"row {index}: feature {name!r} {_not_a_float64(value)}")
    return rows


def _raise_key_mismatch(
    index: int, expected: frozenset[str], row: dict[str, Any], reference: str = ""
) -> None:
    missing = [name for name in expected if name not in row]
    unknown = [name for name in row if name not in expected]
    problems = []
    if missing:
        problems.append(f"missing feature{_s(missing)} {_names(sorted(missing))}")
    if unknown:
        problems.append(f"unknown feature{_s(unknown)} {_names(unknown)}")
    against = f" (compared with {reference})" if reference else ""
    raise InvalidInput(f"row {index}: {'; '.join(problems)}{against}")


def number_problem(value: Any) -> str | None:
    """Return what keeps `value` from being a feature of type number, or None if nothing."""
    kind = type(value)
    if kind is float:
        return None if math.isfinite(value) else f"must be a finite number, got {value!r}"
    if kind is int:
        return None if -FLOAT64_MAX_INT <= value <= FLOAT64_MAX_INT else _not_a_float64(value)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return f"must be a number, got {describe(value)}"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # a Fraction or Decimal past float64
        return _not_a_float64(value)
    return None if finite else f"must be a finite number, got {value!r}"


def _check_integer(value: Any) -> str | None:
    if type(value) is int:
        return None if INT64_MIN <= value <= INT64_MAX else _not_an_int64(value)
    if isinstance(value, bool | np.bool_):
        return f"must be an integer, got {describe(value)}"
    if isinstance(value, numbers.Integral):
        return None if INT64_MIN <= int(value) <= INT64_MAX else _not_an_int64(value)
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except OverflowError:  # a Fraction or Decimal past float64
            return _not_an_int64(value)
        # Some clients write every number as a float; 3.0 is still the integer 3.
        if math.isfinite(number) and number.is_integer():
            return None if INT64_MIN <= number <= INT64_MAX else _not_an_int64(value)
    return f"must be an integer, got {describe(value)}"


def _not_a_float64(value: Any) -> str:
    return f"is out of range: a number must be within ±{FLOAT64_MAX:.4g}, got {describe(value)}"


def _not_an_int64(value: Any) -> str:
    return (
        f"is out of range: an integer must be within {INT64_MIN} to {INT64_MAX} (int64), "
        f"got {describe(value)}"
    )


def _check_string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {describe(value)}"


def _check_boolean(value: Any) -> str | None:
    return (
        None if isinstance(value, bool | np.bool_) else f"must be a boolean, got {describe(value)}"
    )


_CHECKS = {
    FeatureType.number: number_problem,
    FeatureType.integer: _check_integer,
    FeatureType.string: _check_string,
    FeatureType.boolean: _check_boolean,
}


def describe(value: Any) -> str:
    """Describe a value the way a JSON client would see it, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return f"boolean {bool(value)!r}".replace("True", "true").replace("False", "false")
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, int) and abs(value) >= _LONG_INTEGER:
        # Past 4300 digits Python refuses to write an int out at all; nobody reads 400 either.
        return f"an integer of {math.floor(math.log10(abs(value))) + 1} digits"
    if isinstance(value, numbers.Real):
        return f"number {value!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _s(items: Sequence[Any]) -> str:
    return "s" if len(items) != 1 else ""
