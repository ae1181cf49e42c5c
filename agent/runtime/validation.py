"""Check request rows against a model's input schema before they reach the model."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.runtime.errors import BatchTooLarge, InvalidInput
from common.schemas import Feature, FeatureType

DEFAULT_MAX_ROWS = 10_000
_SHOWN = 10  # names listed in one message before it is cut short


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
                raise InvalidInput(f"row {index} is {_kind(row)}, not an object of feature values")
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
        raise InvalidInput(f"rows must be a list of objects, got {_kind(rows)}")
    if not rows:
        raise InvalidInput("empty batch: send at least one row")
    if len(rows) > max_rows:
        raise BatchTooLarge(f"batch of {len(rows)} rows is over the limit of {max_rows} rows")


def _validate_schemaless(rows: list[Any], names: frozenset[str] | None) -> list[dict[str, Any]]:
    first = rows[0]
    if type(first) is not dict:
        raise InvalidInput(f"row 0 is {_kind(first)}, not an object of feature values")
    if not first:
        raise InvalidInput("row 0 has no features")
    keys = names if names is not None else frozenset(first)
    reference = "" if names is not None else "row 0"
    for index, row in enumerate(rows):
        if type(row) is not dict:
            raise InvalidInput(f"row {index} is {_kind(row)}, not an object of feature values")
        if row.keys() != keys:
            _raise_key_mismatch(index, keys, row, reference=reference)
        for name, value in row.items():
            if isinstance(value, dict | list | tuple) or value is None:
                raise InvalidInput(
                    f"row {index}: feature {name!r} must be a number, string or boolean, "
                    f"got {_kind(value)}"
                )
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


def _check_number(value: Any) -> str | None:
    kind = type(value)
    if kind is float:
        return None if math.isfinite(value) else f"must be a finite number, got {value!r}"
    if kind is int:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return f"must be a number, got {_kind(value)}"
    return None if math.isfinite(value) else f"must be a finite number, got {value!r}"


def _check_integer(value: Any) -> str | None:
    if type(value) is int:
        return None
    if isinstance(value, bool | np.bool_):
        return f"must be an integer, got {_kind(value)}"
    if isinstance(value, numbers.Integral):
        return None
    # Some clients write every number as a float; 3.0 is still the integer 3.
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return None
    return f"must be an integer, got {_kind(value)}"


def _check_string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {_kind(value)}"


def _check_boolean(value: Any) -> str | None:
    return None if isinstance(value, bool | np.bool_) else f"must be a boolean, got {_kind(value)}"


_CHECKS = {
    FeatureType.number: _check_number,
    FeatureType.integer: _check_integer,
    FeatureType.string: _check_string,
    FeatureType.boolean: _check_boolean,
}


def _kind(value: Any) -> str:
    """Describe a value the way a JSON client would see it, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return f"boolean {bool(value)!r}".replace("True", "true").replace("False", "false")
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
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
