"""Window sketches: a live window's counts on a profile's bins, cheap to extend, exact to merge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from common.drift.binning import Binder, binder_of
from common.drift.counts import (
    FeatureCounts,
    NumericCounts,
    add_columns,
    empty_counts,
    merge_counts,
)
from common.drift.frames import Columns, columns_of, is_row
from common.drift.profile import ReferenceProfile, prediction_columns
from common.drift.rows import count_row, row_plan, row_predictions


class ProfileMismatch(ValueError):
    """A sketch used with a profile, or merged with a sketch, of another profile."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowSketch(_Model):
    """A window of live rows summarised as counts on a reference profile's bins."""

    format: Literal[1] = 1
    profile: str = Field(description="digest of the profile the counts are on")
    rows: int = Field(default=0, ge=0)
    features: dict[str, FeatureCounts]
    predictions: dict[str, FeatureCounts] = Field(default_factory=dict)
    _binder: Binder | None = PrivateAttr(default=None)
    _plan: tuple[Any, ...] | None = PrivateAttr(default=None)

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
        """Count more rows: a row dict, a list of row dicts, a DataFrame or a mapping of columns."""
        # Private attributes read through pydantic's __getattr__ cost microseconds: go direct.
        private = cast(dict[str, Any], self.__pydantic_private__)
        binder = private["_binder"]
        if binder is None:
            raise RuntimeError("the sketch is not bound to a profile: call bind(profile) first")
        if is_row(frame):
            self._add_row(binder, frame, predictions)
            return self
        columns = columns_of(frame)
        counted = [(name, columns, self.features) for name in self.features]
        if self.predictions:
            if predictions is None:
                predicted = Columns({}, columns.rows)
            else:
                predicted = prediction_columns(predictions, columns.rows, list(self.predictions))
            counted += [(name, predicted, self.predictions) for name in self.predictions]
        elif predictions is not None:
            raise ValueError("predictions given but the profile has none")
        add_columns(binder, counted)
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
            features={
                name: merge_counts([s.features[name] for s in sketches]) for name in self.features
            },
            predictions={
                name: merge_counts([s.predictions[name] for s in sketches])
                for name in self.predictions
            },
        )
        merged._binder = self._binder
        return merged

    def _add_row(self, binder: Binder, row: Mapping[str, Any], prediction: Any) -> None:
        private = cast(dict[str, Any], self.__pydantic_private__)
        plan = private["_plan"]
        if plan is None or plan[0] is not self.features or plan[1] is not self.predictions:
            plan = (
                self.features,
                self.predictions,
                row_plan(binder, self.features),
                row_plan(binder, self.predictions),
            )
            private["_plan"] = plan
        count_row(plan[2], row)
        if self.predictions:
            count_row(plan[3], row_predictions(list(self.predictions), prediction))
        elif prediction is not None:
            raise ValueError("predictions given but the profile has none")
        self.rows += 1


def sketch(
    profile: ReferenceProfile, frame: Any = None, *, predictions: Any = None
) -> WindowSketch:
    """Return the sketch of a window (None for an empty one) on the profile's bins."""
    window = WindowSketch(
        profile=profile.digest,
        features={name: empty_counts(feature) for name, feature in profile.features.items()},
        predictions={name: empty_counts(feature) for name, feature in profile.predictions.items()},
    )
    window._binder = binder_of(profile)
    if frame is not None:
        window.add(frame, predictions=predictions)
    return window


def check_shape(profile: ReferenceProfile, window: WindowSketch) -> None:
    """Raise ProfileMismatch unless the sketch was made on this profile."""
    if window.profile != profile.digest:
        raise ProfileMismatch(f"sketch of profile {window.profile[:12]}, not {profile.digest[:12]}")
    for mine, theirs in (
        (profile.features, window.features),
        (profile.predictions, window.predictions),
    ):
        if set(mine) != set(theirs):
            raise ProfileMismatch(f"sketch features {sorted(theirs)} differ from {sorted(mine)}")
        for name, feature in mine.items():
            size = len(feature.counts)
            state = theirs[name]
            offsets = len(state.offsets) if isinstance(state, NumericCounts) else size
            if state.kind != feature.kind or len(state.counts) != size or offsets != size:
                raise ProfileMismatch(f"sketch of feature {name!r} does not fit its profile")


def _check_same(mine: WindowSketch, other: WindowSketch) -> None:
    if other.profile != mine.profile:
        raise ProfileMismatch(
            f"cannot merge sketches of profiles {mine.profile[:12]} and {other.profile[:12]}"
        )
    for ours, theirs in ((mine.features, other.features), (mine.predictions, other.predictions)):
        if set(ours) != set(theirs):
            raise ProfileMismatch(
                f"cannot merge sketches of features {sorted(ours)} and {sorted(theirs)}"
            )
        for name, state in ours.items():
            if theirs[name].kind != state.kind or len(theirs[name].counts) != len(state.counts):
                raise ProfileMismatch(f"cannot merge sketches: feature {name!r} differs")
