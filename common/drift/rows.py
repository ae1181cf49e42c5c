"""Count one row at a time: the agent's predict path, so every lookup it can skip is skipped."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from common.drift.binning import (
    Binder,
    CategoryIndex,
    NumericBins,
    category_of,
    fixed_point,
    numeric_position,
)
from common.drift.counts import CategoricalCounts, NumericCounts
from common.drift.exact import expansion, value_of
from common.drift.frames import INFINITE, LARGEST, PREDICTION, float_or_nan

Plan = list[tuple[Any, ...]]


class _Absent:
    __slots__ = ()


_ABSENT = _Absent()


def row_plan(binder: Binder, states: dict[str, Any]) -> Plan:
    """Return what counting a row needs per feature, unpacked once for the whole window."""
    # Attribute lookups per value would cost about as much as the counting itself.
    plan: Plan = []
    for name, state in states.items():
        slot = binder.slots[name]
        if isinstance(slot, NumericBins):
            plan.append(
                (
                    name,
                    slot,
                    slot.low,
                    slot.high,
                    slot.edge_list,
                    slot.scale,
                    slot.marks,
                    state.counts,
                    state.offsets,
                    None,
                    state,
                )
            )
        else:
            plan.append((name, None, 0.0, 0.0, None, 0.0, None, state.counts, None, slot, state))
    return plan


def count_row(plan: Plan, row: Mapping[str, Any]) -> None:
    """Count one row's values (a missing key is absent) into the states of a plan."""
    # The predict path runs this once per request: plain numbers in range and listed string
    # categories take the short branch, everything else the general one.
    for name, bins, low, high, edges, scale, marks, counts, offsets, categories, state in plan:
        value = row.get(name, _ABSENT)
        if bins is not None:
            if value.__class__ is int:
                value = float_or_nan(value)
            if value.__class__ in _PLAIN_FLOATS and low <= value < high:
                position = bisect_right(edges, value) - 1
                counts[position] += 1
                # As fixed_point(): inside the range the place needs no clamping.
                offsets[position] += int((value - low) * scale) - marks[position]
            else:
                _count_number(state, bins, value)
        else:
            listed = categories.index.get(value) if value.__class__ is str else None
            if listed is None:
                _count_category(state, categories, value)
            else:
                counts[listed] += 1


_PLAIN_FLOATS = frozenset({float, np.float64})


def _count_category(state: CategoricalCounts, slot: CategoryIndex, value: Any) -> None:
    if value is _ABSENT:
        state.absent += 1
        return
    key = category_of(value)
    if key is None:
        state.missing += 1
    elif key == INFINITE:
        state.infinite += 1
    else:
        position = slot.index.get(key)
        if position is None:
            state.other += 1
        else:
            state.counts[position] += 1


def _count_number(state: NumericCounts, slot: NumericBins, value: Any) -> None:
    if value is _ABSENT:
        state.absent += 1
        return
    if type(value) is not float:
        value = float_or_nan(value)
    if value != value:
        state.missing += 1
    elif abs(value) > LARGEST:
        state.infinite += 1
    else:
        position = numeric_position(slot, value)
        if position < 0:
            state.below += 1
            state.below_sum = expansion(value_of(state.below_sum) + Fraction(value))
        elif position >= slot.size:
            state.above += 1
            state.above_sum = expansion(value_of(state.above_sum) + Fraction(value))
        else:
            state.counts[position] += 1
            state.offsets[position] += fixed_point(slot, value) - slot.marks[position]


def row_predictions(names: list[str], prediction: Any) -> dict[str, Any]:
    """Return one row's prediction by column name: a scalar, a mapping or a sequence."""
    if prediction is None:
        return {}
    if names == [PREDICTION]:
        return {PREDICTION: prediction}
    if isinstance(prediction, Mapping):
        return {f"{PREDICTION}.{key}": value for key, value in prediction.items()}
    if isinstance(prediction, (Sequence, np.ndarray, pd.Series)) and not isinstance(
        prediction, str
    ):
        if len(prediction) != len(names):
            raise ValueError(f"{len(prediction)} prediction values for {len(names)} columns")
        return dict(zip(names, prediction, strict=True))
    raise ValueError(
        "this profile's predictions have several columns: give a mapping or a sequence"
    )
