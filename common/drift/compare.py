"""Compare a window sketch with its reference profile: per-feature statistics, drift decisions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.drift import statistics
from common.drift.binning import OFFSET_BITS
from common.drift.counts import CategoricalCounts, NumericCounts
from common.drift.exact import value_of
from common.drift.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from common.drift.sketch import WindowSketch, check_shape, sketch

TestName = Literal["psi", "ks", "wasserstein", "jensen_shannon", "chi2"]
Status = Literal["ok", "missing", "empty"]

DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.2,
    "ks": 0.05,
    "wasserstein": 0.1,
    "jensen_shannon": 0.1,
    "chi2": 0.05,
}
DEFAULT_DRIFT_SHARE = 0.5
LARGE_REFERENCE = 1000
"""Above this many reference values the default test is a distance, at or below it a p-value."""

NUMERIC_TESTS = frozenset({"psi", "ks", "wasserstein", "jensen_shannon"})
CATEGORICAL_TESTS = frozenset({"psi", "chi2", "jensen_shannon"})
PVALUE_TESTS = frozenset({"ks", "chi2"})
_SCORES = {
    "psi": "psi",
    "ks": "ks_pvalue",
    "wasserstein": "wasserstein",
    "jensen_shannon": "jensen_shannon",
    "chi2": "chi2_pvalue",
}


class _Model(BaseModel):
    # A distance can overflow to inf on absurd values; JSON keeps it as Infinity, not null.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class FeatureDrift(_Model):
    """Drift statistics and the decision for one feature (None where a figure does not apply)."""

    kind: Literal["numeric", "categorical"]
    status: Status = Field(description="missing: no window row had it; empty: nothing to compare")
    count: int = Field(description="window values compared (finite, not missing)")
    missing: int
    infinite: int
    absent: int = Field(description="window rows that did not carry the feature")
    out_of_range: int | None = Field(default=None, description="numeric: values outside [min, max]")
    unseen: int | None = Field(
        default=None, description="categorical: values of unlisted categories"
    )
    psi: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    wasserstein: float | None = Field(default=None, description="normalised by the reference std")
    jensen_shannon: float | None = None
    chi2_pvalue: float | None = None
    test: TestName
    threshold: float
    score: float | None = Field(default=None, description="the deciding test's figure")
    pvalue_adjusted: float | None = Field(default=None, description="Benjamini-Hochberg, with fdr")
    drifted: bool = False


class DriftReport(_Model):
    """A window's drift against its reference profile, per feature and for the dataset."""

    profile: str
    reference_rows: int
    window_rows: int
    features: dict[str, FeatureDrift]
    predictions: dict[str, FeatureDrift] = Field(default_factory=dict)
    n_features: int = Field(description="input features compared (status ok)")
    n_drifted: int
    share_drifted: float
    drift_share: float = Field(description="share of drifted features that makes dataset drift")
    fdr: float | None = Field(default=None, description="Benjamini-Hochberg level, when used")
    dataset_drift: bool
    prediction_drift: bool | None = Field(default=None, description="None without predictions")


def compare(
    profile: ReferenceProfile,
    window: WindowSketch | Any,
    *,
    tests: Mapping[str, TestName] | None = None,
    thresholds: Mapping[str, float] | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    fdr: float | None = None,
) -> DriftReport:
    """Compare a window (a sketch, or a frame to sketch) with its profile and decide drift.

    `tests` and `thresholds` override the test and threshold of named features. With `fdr`, the
    features without a test of their own take their p-value test (KS, chi-square), every p-value
    decision goes through Benjamini-Hochberg at that level, and the dataset drifts when any
    feature does.
    """
    if not isinstance(window, WindowSketch):
        window = sketch(profile, window)
    check_shape(profile, window)
    tests, thresholds = dict(tests or {}), dict(thresholds or {})
    _check_options(profile, tests, thresholds, drift_share, fdr)
    results = {}
    for group, states in (("features", window.features), ("predictions", window.predictions)):
        references = getattr(profile, group)
        results[group] = _measure(references, states, window.rows)
        for name, result in results[group].items():
            test = tests.get(name) or _default_test(result.kind, references[name].count, fdr)
            threshold = fdr if fdr is not None and test in PVALUE_TESTS else thresholds.get(name)
            if fdr is not None and test in PVALUE_TESTS and name in thresholds:
                raise ValueError(f"thresholds[{name!r}]: with fdr, p-value tests use the fdr level")
            result.test = test
            result.threshold = DEFAULT_THRESHOLDS[test] if threshold is None else float(threshold)
            result.score = getattr(result, _SCORES[test]) if result.status == "ok" else None
            result.drifted = result.score is not None and _exceeds(
                test, result.score, result.threshold
            )
    if fdr is not None:
        _control_fdr([*results["features"].values(), *results["predictions"].values()], fdr)
    features, predictions = results["features"], results["predictions"]
    compared = [f for f in features.values() if f.status == "ok"]
    drifted = sum(f.drifted for f in compared)
    share = drifted / len(compared) if compared else 0.0
    judged = [f for f in predictions.values() if f.status == "ok"]
    return DriftReport(
        profile=profile.digest,
        reference_rows=profile.rows,
        window_rows=window.rows,
        features=features,
        predictions=predictions,
        n_features=len(compared),
        n_drifted=drifted,
        share_drifted=share,
        drift_share=drift_share,
        fdr=fdr,
        dataset_drift=(drifted > 0) if fdr is not None else bool(compared) and share >= drift_share,
        prediction_drift=any(f.drifted for f in judged) if judged else None,
    )


def _check_options(
    profile: ReferenceProfile,
    tests: dict[str, Any],
    thresholds: dict[str, Any],
    drift_share: float,
    fdr: float | None,
) -> None:
    known = dict(profile.all_features())
    for option, names in (("tests", tests), ("thresholds", thresholds)):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"{option} names unknown features: {unknown}")
    for name, test in tests.items():
        allowed = NUMERIC_TESTS if known[name].kind == "numeric" else CATEGORICAL_TESTS
        if test not in allowed:
            raise ValueError(f"tests[{name!r}]: {test!r} is not one of {sorted(allowed)}")
    for name, threshold in thresholds.items():
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(
                f"thresholds[{name!r}] must be a finite number >= 0, got {threshold!r}"
            )
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share!r}")
    if fdr is not None and not 0 < fdr < 1:
        raise ValueError(f"fdr must be in (0, 1), got {fdr!r}")


def _default_test(kind: str, reference_count: int, fdr: float | None) -> TestName:
    # Evidently's defaults, so that decisions can be set side by side with its reports.
    if fdr is not None or reference_count <= LARGE_REFERENCE:
        return "ks" if kind == "numeric" else "chi2"
    return "wasserstein" if kind == "numeric" else "jensen_shannon"


def _exceeds(test: str, score: float, threshold: float) -> bool:
    if test == "ks":
        return score <= threshold
    if test == "chi2":
        return score < threshold
    return score >= threshold


def _control_fdr(results: list[FeatureDrift], fdr: float) -> None:
    tested = [r for r in results if r.test in PVALUE_TESTS and r.score is not None]
    adjusted = statistics.benjamini_hochberg(np.array([r.score for r in tested]))
    for result, value in zip(tested, adjusted, strict=True):
        result.pvalue_adjusted = float(value)
        result.drifted = bool(value <= fdr)


def _measure(
    references: Mapping[str, NumericProfile | CategoricalProfile],
    states: Mapping[str, NumericCounts | CategoricalCounts],
    rows: int,
) -> dict[str, FeatureDrift]:
    results: dict[str, FeatureDrift] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    for name, reference in references.items():
        state = states[name]
        status: Status = "ok"
        if rows > 0 and state.absent == rows:
            status = "missing"
        elif reference.count == 0 or state.count == 0:
            status = "empty"
        results[name] = FeatureDrift(
            kind=reference.kind,
            status=status,
            count=state.count,
            missing=state.missing,
            infinite=state.infinite,
            absent=state.absent,
            out_of_range=state.below + state.above if isinstance(state, NumericCounts) else None,
            unseen=state.other if isinstance(state, CategoricalCounts) else None,
            test="psi",
            threshold=0.0,
        )
        if status == "ok":
            (numeric if reference.kind == "numeric" else categorical).append(name)
    _numeric_statistics(results, [(n, references[n], states[n]) for n in numeric])
    _categorical_statistics(results, [(n, references[n], states[n]) for n in categorical])
    return results


def _numeric_statistics(
    results: dict[str, FeatureDrift], items: list[tuple[str, Any, Any]]
) -> None:
    if not items:
        return
    width = max(len(reference.counts) for _, reference, _ in items)
    shape = (len(items), width)
    edges = np.zeros((len(items), width + 1))
    reference_fine, window_fine = np.zeros(shape), np.zeros(shape)
    reference_means, window_means = np.zeros(shape), np.zeros(shape)
    reference_deciles, window_deciles = np.zeros((len(items), 10)), np.zeros((len(items), 10))
    below, above, tails = np.zeros(len(items)), np.zeros(len(items)), np.zeros(len(items))
    for row, (_, reference, state) in enumerate(items):
        size = len(reference.counts)
        edges[row, : size + 1] = reference.edges
        edges[row, size + 1 :] = reference.edges[-1]
        reference_fine[row, :size] = reference.counts
        window_fine[row, :size] = state.counts
        reference_means[row, :size], window_means[row, :size] = _bin_means(reference, state)
        below[row], above[row] = state.below, state.above
        tails[row] = _tails(reference, state)
        cuts = np.searchsorted(edges[row, : size + 1], reference.deciles)
        reference_deciles[row, : len(cuts) + 1] = _decile_cells(
            reference_fine[row, :size], cuts, 0, 0
        )
        window_deciles[row, : len(cuts) + 1] = _decile_cells(
            window_fine[row, :size], cuts, state.below, state.above
        )
    # KS runs over every cell in order: below the range, the fine bins, above the range.
    reference_cells = np.concatenate(
        (np.zeros((len(items), 1)), reference_fine, np.zeros((len(items), 1))), axis=1
    )
    window_cells = np.concatenate((below[:, None], window_fine, above[:, None]), axis=1)
    n_reference = reference_fine.sum(axis=1)
    n_window = window_cells.sum(axis=1)
    ks = statistics.ks_statistic(reference_cells, window_cells)
    pvalues = statistics.ks_pvalue(ks, n_reference, n_window)
    distance = statistics.wasserstein(
        edges, reference_fine, reference_means, window_fine, window_means, below, above, tails
    )
    scale = np.array([max(reference.std or 0.0, statistics.MIN_STD) for _, reference, _ in items])
    psi = statistics.psi(reference_deciles, window_deciles)
    js = statistics.jensen_shannon(reference_deciles, window_deciles)
    for row, (name, _, _) in enumerate(items):
        result = results[name]
        result.psi = float(psi[row])
        result.ks_statistic = float(ks[row])
        result.ks_pvalue = float(pvalues[row])
        result.wasserstein = float(distance[row] / scale[row])
        result.jensen_shannon = float(js[row])


def _bin_means(reference: NumericProfile, state: NumericCounts) -> tuple[np.ndarray, np.ndarray]:
    # The mean value in each fine bin: the profile keeps it in % of the bin's width, the sketch as
    # summed fixed-point places (see binning.OFFSET_BITS); half a step undoes the truncation.
    edges = np.asarray(reference.edges)
    width = np.diff(edges)
    reference_means = edges[:-1] + np.asarray(reference.positions) / 100 * width
    counts = np.asarray(state.counts, dtype=np.float64)
    span = edges[-1] - edges[0]
    steps = np.divide(
        np.asarray(state.offsets, dtype=np.float64),
        counts,
        out=np.zeros_like(counts),
        where=counts > 0,
    )
    with np.errstate(over="ignore", invalid="ignore"):
        window_means = edges[:-1] + (steps + 0.5) * (span / 2.0**OFFSET_BITS)
    window_means = np.where(
        np.isfinite(window_means), np.clip(window_means, edges[:-1], edges[1:]), edges[:-1]
    )
    return reference_means, window_means


def _decile_cells(fine: np.ndarray, cuts: np.ndarray, below: int, above: int) -> np.ndarray:
    # Decile edges are fine edges, so decile cells are runs of fine bins; the outer ones are open.
    cumulative = np.concatenate(([0.0], np.cumsum(fine)))
    bounds = np.concatenate(([0], cuts, [len(fine)]))
    cells = np.diff(cumulative[bounds])
    cells[0] += below
    cells[-1] += above
    return cells


def _tails(reference: NumericProfile, state: NumericCounts) -> float:
    # Exact: the reference has nothing outside its edges, so there the area between the two
    # distribution functions is the window values' summed distance to the nearest edge.
    if not (state.below or state.above):
        return 0.0
    low, high = Fraction(reference.edges[0]), Fraction(reference.edges[-1])
    total = (state.below * low - value_of(state.below_sum)) + (
        value_of(state.above_sum) - state.above * high
    )
    try:
        return float(total)
    except OverflowError:
        return math.inf


def _categorical_statistics(
    results: dict[str, FeatureDrift], items: list[tuple[str, Any, Any]]
) -> None:
    if not items:
        return
    # One cell per listed category and a last one for all the others.
    width = max(len(reference.counts) for _, reference, _ in items) + 1
    reference_cells, window_cells = np.zeros((len(items), width)), np.zeros((len(items), width))
    for row, (_, reference, state) in enumerate(items):
        size = len(reference.counts)
        reference_cells[row, :size] = reference.counts
        reference_cells[row, -1] = reference.other
        window_cells[row, :size] = state.counts
        window_cells[row, -1] = state.other
    psi = statistics.psi(reference_cells, window_cells)
    js = statistics.jensen_shannon(reference_cells, window_cells)
    chi2 = statistics.chi2_pvalue(reference_cells, window_cells)
    for row, (name, _, _) in enumerate(items):
        result = results[name]
        result.psi = float(psi[row])
        result.jensen_shannon = float(js[row])
        result.chi2_pvalue = float(chi2[row])
