"""Count values on a profile's bins: whole columns vectorised, single values with bisect."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from common.drift.exact import exact_sum
from common.drift.frames import LARGEST, category_counts, category_key

if TYPE_CHECKING:
    from common.drift.profile import CategoricalProfile, NumericProfile, ReferenceProfile


OFFSET_BITS = 24
"""A window value's place is kept as an integer count of 2**-24ths of the reference range."""


class NumericBins:
    """A numeric feature's edges, as an array for columns and as a list for single values."""

    __slots__ = ("edge_list", "edges", "high", "low", "marks", "scale", "size")

    def __init__(self, profile: NumericProfile):
        self.edges = np.asarray(profile.edges, dtype=np.float64)
        self.edge_list = list(profile.edges)
        self.size = max(len(self.edge_list) - 1, 0)
        # Without edges every finite value lies below the (absent) range.
        self.low = self.edge_list[0] if self.edge_list else math.inf
        self.high = self.edge_list[-1] if self.edge_list else math.inf
        with np.errstate(over="ignore", divide="ignore"):
            span = self.high - self.low if self.edge_list else 1.0
            scale = float(2.0**OFFSET_BITS / span) if self.size else 0.0
        self.scale = scale if math.isfinite(scale) else 0.0
        # Places are counted from each bin's left edge, which keeps the sums small in JSON.
        self.marks = [fixed_point(self, edge) for edge in self.edge_list]


def fixed_point(bins: NumericBins, value: float) -> int:
    """Return the place of a value inside the edges, as an integer of 2**-24ths of the range."""
    return int((value - bins.low) * bins.scale)


class CategoryIndex:
    """A categorical feature's position of each listed category."""

    __slots__ = ("index", "size")

    def __init__(self, profile: CategoricalProfile):
        self.index = {key: i for i, key in enumerate(profile.categories)}
        self.size = len(profile.categories)


Slot = NumericBins | CategoryIndex


class Binder:
    """The per-feature lookup structures of one profile, built once and shared by its sketches."""

    __slots__ = ("digest", "slots")

    def __init__(self, profile: ReferenceProfile):
        self.digest = profile.digest
        self.slots: dict[str, Slot] = {
            name: NumericBins(feature) if feature.kind == "numeric" else CategoryIndex(feature)
            for name, feature in profile.all_features()
        }


def binder_of(profile: ReferenceProfile) -> Binder:
    """Return the profile's binder, building it on first use."""
    binder = profile._binder
    if binder is None or binder.digest != profile.digest:
        binder = Binder(profile)
        profile._binder = binder
    return binder


@dataclass
class NumericBatch:
    """What one column adds to a numeric feature's window counts."""

    counts: np.ndarray
    offsets: np.ndarray
    below: int
    above: int
    below_sum: Fraction
    above_sum: Fraction
    missing: int
    infinite: int


@dataclass
class CategoricalBatch:
    """What one column adds to a categorical feature's window counts."""

    counts: np.ndarray
    other: int
    missing: int
    infinite: int


def count_numeric(values: np.ndarray, bins: NumericBins) -> NumericBatch:
    """Count a float64 column on a numeric feature's bins."""
    usable = np.abs(values) <= LARGEST
    if usable.all():
        finite, missing, infinite = values, 0, 0
    else:
        finite = values[usable]
        missing = int(np.count_nonzero(np.isnan(values[~usable])))
        infinite = len(values) - missing - len(finite)
    edges = bins.edges
    if len(edges) == 0:
        nothing = np.zeros(0, np.int64)
        return NumericBatch(
            nothing, nothing, len(finite), 0, exact_sum(finite), Fraction(0), missing, infinite
        )
    if len(finite) <= len(edges):
        # Few values: a binary search each is cheaper than sorting them.
        where = np.searchsorted(edges, finite, side="right")
        outside_low = where == 0
        outside_high = where == len(edges)
        keep = ~(outside_low | outside_high)
        inside, index = finite[keep], where[keep] - 1
        counts = np.bincount(index, minlength=bins.size)
        offsets = np.bincount(index, weights=_places(inside, bins), minlength=bins.size).astype(
            np.int64
        )
        low_values, high_values = finite[outside_low], finite[outside_high]
    else:
        # Many values: one sort and a search of the edges into it beats a search per value.
        ordered = finite.copy() if finite is values else finite
        ordered.sort()
        positions = np.searchsorted(ordered, edges, side="left")
        counts = np.diff(positions)
        inside = ordered[positions[0] : positions[-1]]
        offsets = np.zeros(bins.size, dtype=np.int64)
        filled = counts > 0
        if filled.any():
            # Sorted values of one bin are contiguous, so one reduceat sums every bin.
            starts = positions[:-1][filled] - positions[0]
            # Float sums of integers below 2**24 stay exact up to 2**29 values in a bin.
            offsets[filled] = np.add.reduceat(_places(inside, bins), starts).astype(np.int64)
        low_values, high_values = ordered[: positions[0]], ordered[positions[-1] :]
    counts = counts.astype(np.int64)
    offsets = offsets - counts * np.asarray(bins.marks[:-1], dtype=np.int64)
    return NumericBatch(
        counts=counts,
        offsets=offsets,
        below=len(low_values),
        above=len(high_values),
        below_sum=exact_sum(low_values),
        above_sum=exact_sum(high_values),
        missing=missing,
        infinite=infinite,
    )


def _places(inside: np.ndarray, bins: NumericBins) -> np.ndarray:
    # The same arithmetic as fixed_point, so that rows and columns give equal sketches; values
    # inside the edges land in [0, 2**24], and truncation is floor there.
    place = np.subtract(inside, bins.low)
    place *= bins.scale
    return np.floor(place, out=place)


def count_categorical(values: np.ndarray, index: CategoryIndex) -> CategoricalBatch:
    """Count a column on a categorical feature's categories; unlisted ones count as other."""
    counted, missing, infinite = category_counts(values)
    counts = np.zeros(index.size, dtype=np.int64)
    other = 0
    for key, n in counted.items():
        position = index.index.get(key)
        if position is None:
            other += n
        else:
            counts[position] += n
    return CategoricalBatch(counts, other, missing, infinite)


def numeric_position(bins: NumericBins, value: float) -> int:
    """Return the fine bin of a finite value: -1 below the range, `size` above it."""
    if value < bins.low:
        return -1
    if value >= bins.high:
        return bins.size
    return bisect_right(bins.edge_list, value) - 1


def category_of(value: object) -> str | None:
    """Return a single value's category key (a fast path for plain strings)."""
    if type(value) is str:
        return value
    return category_key(value)
