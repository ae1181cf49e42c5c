"""The figures behind the plots: fleet drift and shadow comparisons over time, distributions.

Fleet windows are the policy engine's (`fleet_windows`: the k-th newest report of every agent),
and each window's drift is the exact comparison of the agents' merged sketches with the
version's reference profile, as the REST API computes it, so a plot shows what the drift rule
decides on.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np

from common.clock import utcnow
from common.drift import DriftReport, ReferenceProfile, WindowSketch, compare
from common.drift.counts import CategoricalCounts, NumericCounts
from common.drift.profile import CategoricalProfile, NumericProfile
from common.reports import ShadowTotals, StoredReport
from control_plane.artifacts import ArtifactStore
from control_plane.context import state
from control_plane.fleet_reports import shadow_totals
from control_plane.policy_runner import fleet_windows
from control_plane.store import Store

VERDICT_LOOKBACK = timedelta(hours=1)  # as GET /environments/{env}/drift/{model}
MAX_REPORTS = 10_000  # as the REST API's fleet views
FINE_GROUPS = 40
MAX_CATEGORIES = 15
PVALUE_TESTS = frozenset({"ks", "chi2"})


@dataclass
class Verdict:
    """The fleet's drift verdict for the serving version over the last hour."""

    report: DriftReport | None
    reason: str | None = None
    windows: int = 0


@dataclass
class FeaturePoint:
    at: datetime
    score: float | None
    drifted: bool


@dataclass
class FeatureSeries:
    """One feature's drift figure over fleet windows, oldest first."""

    name: str
    test: str
    threshold: float
    points: list[FeaturePoint] = field(default_factory=list)

    @property
    def pvalue(self) -> bool:
        """Tell whether the figure is a p-value (drift below the threshold, not above)."""
        return self.test in PVALUE_TESTS

    @property
    def drifted_now(self) -> bool:
        return bool(self.points) and self.points[-1].drifted


@dataclass
class FleetWindow:
    """One fleet window: when, how many rows and agents, and its comparison."""

    index: int  # 0 is the newest
    start: datetime
    end: datetime
    agents: int
    report: DriftReport
    sketch: WindowSketch


@dataclass
class DriftHistory:
    windows: list[FleetWindow]  # newest first
    series: list[FeatureSeries]
    profile: ReferenceProfile | None
    reason: str | None = None


@dataclass
class Distribution:
    """Reference vs window shares of one feature on a set of bins."""

    feature: str
    kind: str
    labels: list[str]
    reference: list[float]
    current: list[float]
    notes: list[str] = field(default_factory=list)


@dataclass
class ShadowPoint:
    at: datetime
    totals: ShadowTotals


class _CompareCache:
    """Remember comparisons by profile and report ids: stored reports never change."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, tuple[str, ...]], DriftReport] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, profile: ReferenceProfile, reports: list[StoredReport], merged: WindowSketch
    ) -> DriftReport:
        key = (profile.digest, tuple(sorted(report.id for report in reports)))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        result = compare(profile, merged)
        with self._lock:
            self._items[key] = result
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return result


_comparisons = _CompareCache()


def load_profile(store: Store, model: str, version: int) -> ReferenceProfile | None:
    """Return a version's reference profile, parsed once per content digest."""

    found = store.registry.get_version(model, version)
    if found is None or found.reference_profile is None:
        return None
    return _read_profile(state().artifacts, found.reference_profile.sha256)


@lru_cache(maxsize=32)
def _read_profile(artifacts: ArtifactStore, digest: str) -> ReferenceProfile:
    # Content-addressed: a digest's content never changes.
    return ReferenceProfile.model_validate_json(artifacts.read_bytes(digest))


def verdict(store: Store, env: str, model: str, version: int) -> Verdict:
    """Merge the last hour's drift sketches of the fleet and compare them with the profile."""
    profile = load_profile(store, model, version)
    if profile is None:
        return Verdict(None, f"v{version} has no reference profile")
    reports = _drift_reports(store, env, model, version, utcnow() - VERDICT_LOOKBACK)
    if not reports:
        return Verdict(None, "no drift windows in the last hour")
    merged = _merge(reports)
    return Verdict(_comparisons.get(profile, reports, merged), windows=len(reports))


def shadow_now(store: Store, env: str, model: str, version: int, shadow: int) -> ShadowTotals:
    """Sum the last hour's shadow comparisons of the current primary and shadow pair."""
    return shadow_totals(_shadow_reports(store, env, model, version, shadow, VERDICT_LOOKBACK))


def drift_history(
    store: Store, env: str, model: str, version: int, since: timedelta, max_windows: int
) -> DriftHistory:
    """Compare each of the newest fleet windows with the profile; series per feature."""
    profile = load_profile(store, model, version)
    if profile is None:
        return DriftHistory([], [], None, f"v{version} has no reference profile")
    reports = _drift_reports(store, env, model, version, utcnow() - since)
    windows: list[FleetWindow] = []
    for index, group in enumerate(fleet_windows(reports)[:max_windows]):
        group = [r for r in group if r.drift is not None and r.drift.sketch is not None]
        if not group:
            continue
        merged = _merge(group)
        windows.append(
            FleetWindow(
                index=index,
                start=min(r.window_start for r in group),
                end=max(r.window_end for r in group),
                agents=len(group),
                report=_comparisons.get(profile, group, merged),
                sketch=merged,
            )
        )
    if not windows:
        return DriftHistory([], [], profile, "no drift windows reported in this period")
    series: dict[str, FeatureSeries] = {}
    for window in reversed(windows):
        figures = {**window.report.features, **window.report.predictions}
        for name, figure in figures.items():
            line = series.setdefault(name, FeatureSeries(name, figure.test, figure.threshold))
            line.points.append(FeaturePoint(window.end, figure.score, figure.drifted))
    return DriftHistory(windows, list(series.values()), profile)


def shadow_history(
    store: Store,
    env: str,
    model: str,
    version: int,
    shadow: int,
    since: timedelta,
    max_windows: int,
) -> list[ShadowPoint]:
    """Sum each fleet window's shadow comparisons of the pair, oldest first."""
    reports = _shadow_reports(store, env, model, version, shadow, since)
    points = [
        ShadowPoint(max(r.window_end for r in group), shadow_totals(group))
        for group in fleet_windows(reports)[:max_windows]
    ]
    return list(reversed(points))


def distribution(
    profile: ReferenceProfile, window: WindowSketch, feature: str, bins: str = "deciles"
) -> Distribution | None:
    """Return the reference and window shares of `feature` on its decile or fine bins."""
    reference = dict(profile.all_features()).get(feature)
    counts = window.features.get(feature) or window.predictions.get(feature)
    if reference is None or counts is None:
        return None
    if isinstance(reference, NumericProfile) and isinstance(counts, NumericCounts):
        return _numeric(feature, reference, counts, bins)
    if isinstance(reference, CategoricalProfile) and isinstance(counts, CategoricalCounts):
        return _categorical(feature, reference, counts)
    return None


def _numeric(
    feature: str, reference: NumericProfile, counts: NumericCounts, bins: str
) -> Distribution:
    edges = np.asarray(reference.edges, dtype=float)
    fine = len(edges) - 1
    if bins == "fine":
        groups = np.arange(fine) * min(FINE_GROUPS, fine) // max(fine, 1)
    else:
        # Deciles are a subset of the fine edges, so each fine bin lies in one decile bin.
        groups = np.searchsorted(np.asarray(reference.deciles, dtype=float), edges[:-1], "right")
    # Number the groups that hold bins 0, 1, 2...: repeated decile edges leave none empty.
    _, first, groups = np.unique(groups, return_index=True, return_inverse=True)
    ref = np.bincount(groups, weights=reference.counts, minlength=len(first))
    cur = np.bincount(groups, weights=counts.counts, minlength=len(first))
    starts = [float(edges[index]) for index in first]
    labels = [
        f"{_num(low)}\N{EN DASH}{_num(high)}"
        for low, high in zip(starts, [*starts[1:], float(edges[-1])], strict=True)
    ]
    ref_total = max(float(ref.sum()), 1.0)
    cur_total = max(float(cur.sum()) + counts.below + counts.above, 1.0)
    reference_shares, current_shares = list(ref / ref_total), list(cur / cur_total)
    # Values outside the reference's range get bars of their own rather than vanishing.
    if counts.below:
        labels.insert(0, f"< {_num(float(edges[0]))}")
        reference_shares.insert(0, 0.0)
        current_shares.insert(0, counts.below / cur_total)
    if counts.above:
        labels.append(f"≥ {_num(float(edges[-1]))}")
        reference_shares.append(0.0)
        current_shares.append(counts.above / cur_total)
    notes = _notes(counts.missing, counts.infinite, counts.absent)
    return Distribution(feature, "numeric", labels, reference_shares, current_shares, notes)


def _categorical(
    feature: str, reference: CategoricalProfile, counts: CategoricalCounts
) -> Distribution:
    names = list(reference.categories)
    ref, cur = list(reference.counts), list(counts.counts)
    ref_other, cur_other = reference.other, counts.other
    if len(names) > MAX_CATEGORIES:
        ref_other += sum(ref[MAX_CATEGORIES:])
        cur_other += sum(cur[MAX_CATEGORIES:])
        names, ref, cur = names[:MAX_CATEGORIES], ref[:MAX_CATEGORIES], cur[:MAX_CATEGORIES]
    if ref_other or cur_other:
        names.append("(other)")
        ref.append(ref_other)
        cur.append(cur_other)
    ref_total, cur_total = max(sum(ref), 1), max(sum(cur), 1)
    return Distribution(
        feature,
        "categorical",
        names,
        [value / ref_total for value in ref],
        [value / cur_total for value in cur],
        _notes(counts.missing, counts.infinite, counts.absent),
    )


def _notes(missing: int, infinite: int, absent: int) -> list[str]:
    named = (("missing", missing), ("infinite", infinite), ("absent from the row", absent))
    return [f"{count} {what}" for what, count in named if count]


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _merge(reports: list[StoredReport]) -> WindowSketch:
    sketches = [r.drift.sketch for r in reports if r.drift is not None and r.drift.sketch]
    return sketches[0].merge(*sketches[1:])


def _drift_reports(
    store: Store, env: str, model: str, version: int, since: datetime
) -> list[StoredReport]:
    return [
        report
        for report in store.reports.query(
            environment=env,
            model=model,
            version=version,
            kind="drift",
            since=since,
            limit=MAX_REPORTS,
        )
        if report.drift is not None and report.drift.sketch is not None
    ]


def _shadow_reports(
    store: Store, env: str, model: str, version: int, shadow: int, since: timedelta
) -> list[StoredReport]:
    return [
        report
        for report in store.reports.query(
            environment=env,
            model=model,
            version=version,
            kind="shadow",
            since=utcnow() - since,
            limit=MAX_REPORTS,
        )
        if report.shadow_version == shadow
    ]
