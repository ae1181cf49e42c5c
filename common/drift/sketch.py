"""Window sketches: a live window's counts on a profile's bins, cheap to add to and exact to merge."""

from __future__ import annotations

import math
import os
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from common.drift.binning import (
    Binder,
    CategoricalBatch,
    CategoryIndex,
    NumericBatch,
    NumericBins,
    binder_of,
    category_of,
    count_categorical,
    count_numeric,
    fixed_point,
    numeric_position,
)
from common.drift.exact import expansion, value_of
from common.drift.frames import INFINITE, PREDICTION, Columns, columns_of, is_row, to_float
from common.drift.profile import ReferenceProfile, prediction_columns

# Columns are counted in threads from this many rows on: numpy's sort releases the GIL.
_PARALLEL_ROWS = 200_000


class ProfileMismatch(ValueError):
    """A sketch used with a profile, or merged with a sketch, of another profile."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NumericCounts(_Model):
    """A window's counts for one numeric feature."""

    kind: Literal["numeric"] = "numeric"
    counts: list[int] = Field(description="values in each of the profile's fine bins")
    offsets: list[int] = Field(
        description="per bin, the summed places of its values past its left edge, in 2**-24ths "
        "of the reference range: where inside the bins the values lie"
    )
    below: int = Field(default=0, ge=0, description="finite values below the first edge")
    above: int = Field(default=0, ge=0, description="finite values at or above the last edge")
    below_sum: list[float] = Field(default_factory=list, description="exact sum of those below")
    above_sum: list[float] = Field(default_factory=list, description="exact sum of those above")
    missing: int = Field(default=0, ge=0, description="NaN, None and values that are not numbers")
    infinite: int = Field(default=0, ge=0)
    absent: int = Field(default=0, ge=0, description="rows that did not carry the feature")

    @property
    def count(self) -> int:
        """Return the number of finite values counted."""
        return sum(self.counts) + self.below + self.above


class CategoricalCounts(_Model):
    """A window's counts for one categorical feature."""

    kind: Literal["categorical"] = "categorical"
    counts: list[int] = Field(description="values of each of the profile's categories")
    other: int = Field(default=0, ge=0, description="values of categories the profile does not list")
    missing: int = Field(default=0, ge=0)
    infinite: int = Field(default=0, ge=0)
    absent: int = Field(default=0, ge=0, description="rows that did not carry the feature")

    @property
    def count(self) -> int:
        """Return the number of values counted, listed or not."""
        return sum(self.counts) + self.other


FeatureCounts = Annotated[NumericCounts | CategoricalCounts, Field(discriminator="kind")]


class WindowSketch(_Model):
    """A window of live rows summarised as counts on a reference profile's bins."""

    format: Literal[1] = 1
    profile: str = Field(description="digest of the profile the counts are on")
    rows: int = Field(default=0, ge=0)
    features: dict[str, FeatureCounts]
    predictions: dict[str, FeatureCounts] = Field(default_factory=dict)
    _binder: Binder | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Compare content only, not the lookup structures cached beside it."""
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def bind(self, profile: ReferenceProfile) -> WindowSketch:
        """Attach the sketch to its profile so that it can `add` rows (e.g. after loading JSON)."""
        check_shape(profile, self)
        self._binder = binder_of(profile)
        return self

    def add(self, frame: Any, *, predictions: Any = None) -> WindowSketch:
        """Count more rows: one row dict, a list of row dicts, a DataFrame or a mapping of columns."""
        binder = self._binder
        if binder is None:
            raise RuntimeError("the sketch is not bound to a profile: call bind(profile) first")
        if is_row(frame):
            self._add_row(binder, frame, predictions)
            return self
        columns = columns_of(frame)
        counted = [(name, columns, self.features) for name in self.features]
        if self.predictions:
            if predictions is None:
                absent = Columns({}, columns.rows)
            else:
                absent = prediction_columns(predictions, columns.rows)
            counted += [(name, absent, self.predictions) for name in self.predictions]
        elif predictions is not None:
            raise ValueError("predictions given but the profile has none")
        _count_columns(binder, counted)
        self.rows += columns.rows
        return self

    def merge(self, *others: WindowSketch) -> WindowSketch:
        """Return a new sketch of this window and the others together."""
        sketches = (self, *others)
        for other in others:
            _check_same(self, other)
        merged = WindowSketch(
            profile=self.profile,
            rows=sum(s.rows for s in sketches),
            features={name: _merge([s.features[name] for s in sketches]) for name in self.features},
            predictions={name: _merge([s.predictions[name] for s in sketches]) for name in self.predictions},
        )
        merged._binder = self._binder
        return merged

    def _add_row(self, binder: Binder, row: Mapping[str, Any], prediction: Any) -> None:
        _count_row(binder.slots, self.features, row)
        if self.predictions:
            _count_row(binder.slots, self.predictions, _row_predictions(list(self.predictions), prediction))
        elif prediction is not None:
            raise ValueError("predictions given but the profile has none")
        self.rows += 1


def sketch(profile: ReferenceProfile, frame: Any = None, *, predictions: Any = None) -> WindowSketch:
    """Return the sketch of a window (None for an empty one) on the profile's bins."""
    window = WindowSketch(
        profile=profile.digest,
        features={name: _empty(feature) for name, feature in profile.features.items()},
        predictions={name: _empty(feature) for name, feature in profile.predictions.items()},
    )
    window._binder = binder_of(profile)
    if frame is not None:
        window.add(frame, predictions=predictions)
    return window


def check_shape(profile: ReferenceProfile, window: WindowSketch) -> None:
    """Raise ProfileMismatch unless the sketch was made on this profile."""
    if window.profile != profile.digest:
        raise ProfileMismatch(f"sketch of profile {window.profile[:12]}, not {profile.digest[:12]}")
    for mine, theirs in ((profile.features, window.features), (profile.predictions, window.predictions)):
        if set(mine) != set(theirs):
            raise ProfileMismatch(f"sketch features {sorted(theirs)} differ from {sorted(mine)}")
        for name, feature in mine.items():
            size = len(feature.counts)
            state = theirs[name]
            offsets = len(state.offsets) if isinstance(state, NumericCounts) else size
            if state.kind != feature.kind or len(state.counts) != size or offsets != size:
                raise ProfileMismatch(f"sketch of feature {name!r} does not fit its profile")


class _Absent:
    __slots__ = ()


_ABSENT = _Absent()


def _empty(feature: Any) -> NumericCounts | CategoricalCounts:
    if feature.kind == "numeric":
        size = max(len(feature.edges) - 1, 0)
        return NumericCounts(counts=[0] * size, offsets=[0] * size)
    return CategoricalCounts(counts=[0] * len(feature.categories))


def _count_row(slots: dict[str, Any], states: dict[str, Any], row: Mapping[str, Any]) -> None:
    # The predict path runs this once per request: plain numbers in range and listed string
    # categories take the short branch, everything else the general one.
    for name, state in states.items():
        slot = slots[name]
        value = row.get(name, _ABSENT)
        if slot.__class__ is NumericBins:
            if value.__class__ is int:
                value = float(value)
            if value.__class__ in _PLAIN_FLOATS and slot.low <= value < slot.high:
                position = bisect_right(slot.edge_list, value) - 1
                state.counts[position] += 1
                # As fixed_point(): inside the range the place needs no clamping.
                state.offsets[position] += int((value - slot.low) * slot.scale) - slot.marks[position]
            else:
                _count_number(state, slot, value)
        else:
            position = slot.index.get(value) if value.__class__ is str else None
            if position is None:
                _count_category(state, slot, value)
            else:
                state.counts[position] += 1


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
        if value is None or isinstance(value, (str, bytes)):
            state.missing += 1
            return
        try:
            value = float(value)
        except (TypeError, ValueError):
            state.missing += 1
            return
    if value != value:
        state.missing += 1
    elif math.isinf(value):
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


def _row_predictions(names: list[str], prediction: Any) -> dict[str, Any]:
    if prediction is None:
        return {}
    if names == [PREDICTION]:
        return {PREDICTION: prediction}
    if isinstance(prediction, Mapping):
        return {f"{PREDICTION}.{key}": value for key, value in prediction.items()}
    if isinstance(prediction, (Sequence, np.ndarray, pd.Series)) and not isinstance(prediction, str):
        return {f"{PREDICTION}.{i}": value for i, value in enumerate(prediction)}
    raise ValueError("this profile's predictions have several columns: give a mapping or a sequence")


def _count_columns(binder: Binder, counted: list[tuple[str, Columns, dict[str, Any]]]) -> None:
    def batch(item: tuple[str, Columns, dict[str, Any]]) -> NumericBatch | CategoricalBatch | None:
        name, columns, _ = item
        values = columns.values.get(name)
        if values is None:
            return None
        slot = binder.slots[name]
        if isinstance(slot, CategoryIndex):
            return count_categorical(values, slot)
        return count_numeric(to_float(values), slot)

    rows = counted[0][1].rows if counted else 0
    workers = min(len(counted), os.cpu_count() or 1)
    if rows >= _PARALLEL_ROWS and workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            batches = list(pool.map(batch, counted))
    else:
        batches = [batch(item) for item in counted]
    for (name, columns, states), result in zip(counted, batches, strict=True):
        state = states[name]
        state.absent += columns.absent.get(name, 0)
        if result is None:
            state.absent += columns.rows
            continue
        # Rows without the name were read as None; they are absent, not missing.
        state.missing += result.missing - columns.absent.get(name, 0)
        state.infinite += result.infinite
        state.counts[:] = (np.asarray(state.counts, dtype=np.int64) + result.counts).tolist()
        if isinstance(result, NumericBatch):
            state.offsets[:] = (np.asarray(state.offsets, dtype=np.int64) + result.offsets).tolist()
            state.below += result.below
            state.above += result.above
            if result.below:
                state.below_sum = expansion(value_of(state.below_sum) + result.below_sum)
            if result.above:
                state.above_sum = expansion(value_of(state.above_sum) + result.above_sum)
        else:
            state.other += result.other


def _merge(states: list[Any]) -> NumericCounts | CategoricalCounts:
    first = states[0]
    counts = np.sum([np.asarray(s.counts, dtype=np.int64) for s in states], axis=0).tolist()
    common = {
        "counts": counts,
        "missing": sum(s.missing for s in states),
        "infinite": sum(s.infinite for s in states),
        "absent": sum(s.absent for s in states),
    }
    if first.kind == "numeric":
        return NumericCounts(
            offsets=np.sum([np.asarray(s.offsets, dtype=np.int64) for s in states], axis=0).tolist(),
            below=sum(s.below for s in states),
            above=sum(s.above for s in states),
            below_sum=expansion(sum((value_of(s.below_sum) for s in states), Fraction(0))),
            above_sum=expansion(sum((value_of(s.above_sum) for s in states), Fraction(0))),
            **common,
        )
    return CategoricalCounts(other=sum(s.other for s in states), **common)


def _check_same(mine: WindowSketch, other: WindowSketch) -> None:
    if other.profile != mine.profile:
        raise ProfileMismatch(
            f"cannot merge sketches of profiles {mine.profile[:12]} and {other.profile[:12]}"
        )
    for ours, theirs in ((mine.features, other.features), (mine.predictions, other.predictions)):
        if set(ours) != set(theirs):
            raise ProfileMismatch(f"cannot merge sketches of features {sorted(ours)} and {sorted(theirs)}")
        for name, state in ours.items():
            if theirs[name].kind != state.kind or len(theirs[name].counts) != len(state.counts):
                raise ProfileMismatch(f"cannot merge sketches: feature {name!r} differs")
