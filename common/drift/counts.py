"""A window's counts per feature, and how batches of columns and other windows add to them."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.drift.binning import (
    Binder,
    CategoricalBatch,
    CategoryIndex,
    NumericBatch,
    count_categorical,
    count_numeric,
)
from common.drift.exact import expansion, value_of
from common.drift.frames import Columns, to_float

# Columns are counted in threads from this many rows on: numpy's sort releases the GIL.
_PARALLEL_ROWS = 200_000


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
    infinite: int = Field(default=0, ge=0, description="+-inf and beyond +-1e300")
    absent: int = Field(default=0, ge=0, description="rows that did not carry the feature")

    @property
    def count(self) -> int:
        """Return the number of finite values counted."""
        return sum(self.counts) + self.below + self.above


class CategoricalCounts(_Model):
    """A window's counts for one categorical feature."""

    kind: Literal["categorical"] = "categorical"
    counts: list[int] = Field(description="values of each of the profile's categories")
    other: int = Field(
        default=0, ge=0, description="values of categories the profile does not list"
    )
    missing: int = Field(default=0, ge=0)
    infinite: int = Field(default=0, ge=0)
    absent: int = Field(default=0, ge=0, description="rows that did not carry the feature")

    @property
    def count(self) -> int:
        """Return the number of values counted, listed or not."""
        return sum(self.counts) + self.other


FeatureCounts = Annotated[NumericCounts | CategoricalCounts, Field(discriminator="kind")]


def empty_counts(feature: Any) -> NumericCounts | CategoricalCounts:
    """Return zero counts on a profiled feature's bins."""
    if feature.kind == "numeric":
        size = max(len(feature.edges) - 1, 0)
        return NumericCounts(counts=[0] * size, offsets=[0] * size)
    return CategoricalCounts(counts=[0] * len(feature.categories))


def add_columns(binder: Binder, counted: list[tuple[str, Columns, dict[str, Any]]]) -> None:
    """Add each (name, columns, states) column's counts to states[name], in threads if large."""

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


def merge_counts(states: list[Any]) -> NumericCounts | CategoricalCounts:
    """Return the counts of several windows of one feature together."""
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
            offsets=np.sum(
                [np.asarray(s.offsets, dtype=np.int64) for s in states], axis=0
            ).tolist(),
            below=sum(s.below for s in states),
            above=sum(s.above for s in states),
            below_sum=expansion(sum((value_of(s.below_sum) for s in states), Fraction(0))),
            above_sum=expansion(sum((value_of(s.above_sum) for s in states), Fraction(0))),
            **common,
        )
    return CategoricalCounts(other=sum(s.other for s in states), **common)
