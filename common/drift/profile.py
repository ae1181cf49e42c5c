"""Reference profiles: a compact per-feature summary of training data, and how to build one."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from common.drift.edges import choose_edges
from common.drift.frames import (
    LARGEST,
    PREDICTION,
    Columns,
    as_array,
    category_counts,
    columns_of,
    looks_numeric,
    to_float,
)

FORMAT: Literal[1] = 1
TOP_CATEGORIES = 100
MAX_DISCRETE_CATEGORIES = 5
"""A numeric feature with at most this many distinct values is profiled as categorical."""

# Columns are profiled in threads from this many rows on: numpy's sort releases the GIL.
_PARALLEL_ROWS = 200_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class NumericProfile(_Model):
    """Summary of one numeric reference feature on its fine quantile bins."""

    kind: Literal["numeric"] = "numeric"
    count: int = Field(ge=0, description="finite values")
    missing: int = Field(ge=0, description="NaN, None and values that are not numbers")
    infinite: int = Field(ge=0, description="+-inf and beyond +-1e300, left out of every statistic")
    mean: float | None = None
    std: float | None = Field(default=None, description="population standard deviation (ddof=0)")
    min: float | None = None
    max: float | None = None
    discrete: bool = Field(description="every reference value sits on a bin's left edge")
    edges: list[float] = Field(description="fine bin edges; bins are [edges[i], edges[i+1])")
    counts: list[int] = Field(description="reference values in each fine bin")
    positions: list[int] = Field(description="mean place of each bin's values, in % of its width")
    deciles: list[float] = Field(
        description="interior decile edges (a subset of edges) for PSI and JS"
    )


class CategoricalProfile(_Model):
    """Summary of one categorical reference feature: its top categories and the rest."""

    kind: Literal["categorical"] = "categorical"
    count: int = Field(ge=0, description="values that are neither missing nor infinite")
    missing: int = Field(ge=0)
    infinite: int = Field(ge=0)
    distinct: int = Field(ge=0, description="distinct categories in the reference")
    categories: list[str] = Field(description="the most frequent categories, most frequent first")
    counts: list[int]
    other: int = Field(ge=0, description="values of the categories beyond the listed ones")


FeatureProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class ReferenceProfile(_Model):
    """Compact summary of a model version's training data and of its predictions on it."""

    format: Literal[1] = FORMAT
    digest: str = Field(description="sha256 of the profile's content; sketches name it")
    rows: int = Field(ge=0)
    bins: int = Field(ge=1)
    features: dict[str, FeatureProfile]
    predictions: dict[str, FeatureProfile] = Field(default_factory=dict)
    _binder: Any = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Compare content only, not the lookup structures cached beside it."""
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def all_features(self) -> Iterable[tuple[str, NumericProfile | CategoricalProfile]]:
        """Iterate over input features and then prediction columns."""
        yield from self.features.items()
        yield from self.predictions.items()


def build_profile(
    frame: Any,
    *,
    predictions: Any = None,
    categorical: Sequence[str] | None = None,
    bins: int = 1000,
    names: Sequence[str] | None = None,
) -> ReferenceProfile:
    """Build the reference profile of a training frame and, optionally, its predictions.

    `frame` is a DataFrame, a 2-D array (with `names`, else columns are "0", "1", ...), a mapping of
    columns or a list of row dicts. `categorical` names features to profile as categories whatever
    their dtype; numbers with at most 5 distinct values are categorical too.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    columns = columns_of(frame, names)
    if any(name == PREDICTION or name.startswith(PREDICTION + ".") for name in columns.values):
        raise ValueError(f"feature names starting with {PREDICTION!r} are reserved for predictions")
    forced = set(categorical or ())
    unknown = forced - set(columns.values)
    if unknown:
        raise ValueError(f"categorical names unknown features: {sorted(unknown)}")
    features = _profile_columns(columns, forced, bins)
    predicted: dict[str, NumericProfile | CategoricalProfile] = {}
    if predictions is not None:
        predicted = _profile_columns(prediction_columns(predictions, columns.rows), set(), bins)
    profile = ReferenceProfile(
        digest="", rows=columns.rows, bins=bins, features=features, predictions=predicted
    )
    # The digest covers everything else, so that a sketch can name the profile it counts on.
    profile.digest = hashlib.sha256(profile.model_dump_json().encode()).hexdigest()
    return profile


def prediction_columns(predictions: Any, rows: int, names: Sequence[str] | None = None) -> Columns:
    """Return predictions as columns under the reserved names: 1-D as one, 2-D as one per column.

    A DataFrame's columns are named by their labels; a 2-D array's by position, or by `names`
    (a profile's prediction names) when given.
    """
    if isinstance(predictions, pd.DataFrame):
        named = predictions.set_axis([f"{PREDICTION}.{c}" for c in predictions.columns], axis=1)
        columns = columns_of(named)
    else:
        array = (
            predictions.to_numpy() if isinstance(predictions, pd.Series) else as_array(predictions)
        )
        if array.ndim == 1:
            columns = columns_of({PREDICTION: array})
        elif array.ndim == 2:
            labels = [f"{PREDICTION}.{i}" for i in range(array.shape[1])]
            if names is not None and len(names) == array.shape[1]:
                labels = list(names)
            columns = columns_of(array, labels)
        else:
            raise ValueError(f"predictions must be 1-D or 2-D, got shape {array.shape}")
    if columns.rows != rows:
        raise ValueError(f"{columns.rows} predictions for {rows} rows")
    return columns


def _profile_columns(
    columns: Columns, forced: set[str], bins: int
) -> dict[str, NumericProfile | CategoricalProfile]:
    def one(name: str) -> NumericProfile | CategoricalProfile:
        values = columns.values[name]
        if name not in forced and looks_numeric(values):
            return _profile_numeric(to_float(values), bins)
        return _profile_categorical(values)

    names = list(columns.values)
    workers = min(len(names), os.cpu_count() or 1)
    if columns.rows >= _PARALLEL_ROWS and workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))
    return {name: one(name) for name in names}


def _profile_numeric(values: np.ndarray, bins: int) -> NumericProfile | CategoricalProfile:
    nan = np.isnan(values)
    finite = np.abs(values) <= LARGEST
    ordered = np.sort(values[finite])
    distinct = int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 if len(ordered) else 0
    if distinct <= MAX_DISCRETE_CATEGORIES:
        return _profile_categorical(values)
    chosen = choose_edges(ordered, bins)
    mean, std = _moments(ordered)
    return NumericProfile(
        count=len(ordered),
        missing=int(np.count_nonzero(nan)),
        infinite=len(values) - len(ordered) - int(np.count_nonzero(nan)),
        mean=mean,
        std=std,
        min=float(ordered[0]),
        max=float(ordered[-1]),
        discrete=chosen.discrete,
        edges=chosen.edges.tolist(),
        counts=chosen.counts.tolist(),
        positions=chosen.positions.tolist(),
        deciles=chosen.deciles.tolist(),
    )


def _moments(ordered: np.ndarray) -> tuple[float, float]:
    # Squares of numbers past 1e154 overflow: scale them down first.
    scale = max(abs(float(ordered[0])), abs(float(ordered[-1])), 1.0)
    if scale < 1e150:
        return float(np.mean(ordered)), float(np.std(ordered))
    scaled = ordered / scale
    return float(np.mean(scaled)) * scale, float(np.std(scaled)) * scale


def _profile_categorical(values: np.ndarray) -> CategoricalProfile:
    counted, missing, infinite = category_counts(values)
    # Most frequent first; ties by key so that the same data always gives the same profile.
    ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    top = ranked[:TOP_CATEGORIES]
    return CategoricalProfile(
        count=sum(counted.values()),
        missing=missing,
        infinite=infinite,
        distinct=len(counted),
        categories=[key for key, _ in top],
        counts=[n for _, n in top],
        other=sum(n for _, n in ranked[TOP_CATEGORIES:]),
    )
