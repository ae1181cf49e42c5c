"""Drift statistics against scipy on the raw data, within the documented tolerances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from common.drift import build_profile, compare, sketch
from common.drift import statistics as drift_statistics

REFERENCE_ROWS = 20_000
WINDOW_ROWS = 5_000


def _windows(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "same": rng.normal(0, 1, WINDOW_ROWS),
        "shifted": rng.normal(0.3, 1, WINDOW_ROWS),
        "wider": rng.normal(0, 1.5, WINDOW_ROWS),
        "outside the range": rng.normal(3, 2, WINDOW_ROWS),
        "far outside": np.concatenate([rng.normal(0, 1, WINDOW_ROWS - 50), np.full(50, -40.0)]),
        "small": rng.normal(0.1, 1, 300),
    }


@pytest.fixture(scope="module")
def continuous():
    rng = np.random.default_rng(7)
    reference = rng.normal(0, 1, REFERENCE_ROWS)
    profile = build_profile(pd.DataFrame({"x": reference}))
    return reference, profile, _windows(rng)


def _direct_decile_counts(deciles: list[float], values: np.ndarray) -> np.ndarray:
    # The decile bins, (-inf, d1), [d1, d2), ..., [d9, inf), counted straight from raw values.
    return np.bincount(np.searchsorted(deciles, values, side="right"), minlength=len(deciles) + 1)


def _direct_psi(reference: np.ndarray, window: np.ndarray) -> float:
    p = reference / reference.sum()
    q = window / window.sum()
    p = np.where(p == 0, 1e-4, p)
    q = np.where(q == 0, 1e-4, q)
    return float(np.sum((q - p) * np.log(q / p)))


@pytest.mark.parametrize("case", list(_windows(np.random.default_rng(0))))
def test_psi_and_jensen_shannon_equal_a_direct_computation_on_the_same_edges(continuous, case):
    reference, profile, windows = continuous
    window = windows[case]
    feature = compare(profile, pd.DataFrame({"x": window})).features["x"]
    deciles = profile.features["x"].deciles
    ref_counts = _direct_decile_counts(deciles, reference)
    win_counts = _direct_decile_counts(deciles, window)
    assert feature.psi == pytest.approx(_direct_psi(ref_counts, win_counts), abs=1e-12)
    expected_js = distance.jensenshannon(ref_counts, win_counts, base=2)
    assert feature.jensen_shannon == pytest.approx(expected_js, abs=1e-12)


@pytest.mark.parametrize("case", list(_windows(np.random.default_rng(0))))
def test_ks_statistic_is_within_0_005_of_scipy_on_continuous_data(continuous, case):
    reference, profile, windows = continuous
    window = windows[case]
    feature = compare(profile, pd.DataFrame({"x": window})).features["x"]
    exact = stats.ks_2samp(reference, window)
    assert abs(feature.ks_statistic - exact.statistic) <= 0.005
    # The p-value is the two-sample distribution's for both sizes (scipy's "asymp" method).
    effective = round(len(reference) * len(window) / (len(reference) + len(window)))
    assert feature.ks_pvalue == pytest.approx(
        stats.kstwo.sf(feature.ks_statistic, effective), rel=1e-9
    )


@pytest.mark.parametrize("case", list(_windows(np.random.default_rng(0))))
def test_normalised_wasserstein_is_within_2_percent_of_scipy(continuous, case):
    reference, profile, windows = continuous
    window = windows[case]
    feature = compare(profile, pd.DataFrame({"x": window})).features["x"]
    exact = stats.wasserstein_distance(reference, window) / np.std(reference)
    assert abs(feature.wasserstein - exact) <= max(0.02 * exact, 0.002)


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n, shift: rng.lognormal(shift, 1, n),
        lambda rng, n, shift: rng.exponential(3 + shift, n),
        lambda rng, n, shift: rng.uniform(-50 + shift * 30, 50, n),
        lambda rng, n, shift: rng.standard_t(3, n) + shift,
        lambda rng, n, shift: 1.7e9 + rng.uniform(0, 3e7, n) + shift * 5e6,
    ],
    ids=["lognormal", "exponential", "uniform", "student-t", "timestamps"],
)
@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_ks_and_wasserstein_hold_their_tolerance_on_other_shapes(draw, shift):
    rng = np.random.default_rng(11)
    reference, window = draw(rng, REFERENCE_ROWS, 0.0), draw(rng, WINDOW_ROWS, shift)
    profile = build_profile(pd.DataFrame({"x": reference}))
    feature = compare(profile, pd.DataFrame({"x": window})).features["x"]
    assert abs(feature.ks_statistic - stats.ks_2samp(reference, window).statistic) <= 0.005
    exact = stats.wasserstein_distance(reference, window) / np.std(reference)
    assert abs(feature.wasserstein - exact) <= max(0.02 * exact, 0.002)


def test_ks_and_wasserstein_are_exact_on_discrete_data():
    rng = np.random.default_rng(3)
    reference = rng.poisson(20, 4000).astype(float)
    window = rng.poisson(21, 800).astype(float)
    profile = build_profile(pd.DataFrame({"x": reference}))
    assert profile.features["x"].discrete
    feature = compare(profile, pd.DataFrame({"x": window})).features["x"]
    exact = stats.ks_2samp(reference, window, method="asymp")
    assert feature.ks_statistic == pytest.approx(exact.statistic, abs=1e-12)
    assert feature.ks_pvalue == pytest.approx(exact.pvalue, rel=1e-9)
    wasserstein = stats.wasserstein_distance(reference, window) / np.std(reference)
    # Edges sit at most 0.1% of a gap below the values they stand for.
    assert feature.wasserstein == pytest.approx(wasserstein, rel=1e-3)


def test_chi_square_equals_scipy_with_reference_shares_as_expected_frequencies():
    rng = np.random.default_rng(5)
    cities = np.array(["lyon", "paris", "nice", "lille", "brest"])
    reference = rng.choice(cities, p=[0.4, 0.3, 0.15, 0.1, 0.05], size=900)
    window = rng.choice(cities, p=[0.35, 0.3, 0.2, 0.1, 0.05], size=400)
    profile = build_profile(pd.DataFrame({"city": reference}))
    feature = compare(profile, pd.DataFrame({"city": window})).features["city"]
    ref_counts = pd.Series(reference).value_counts().reindex(cities).to_numpy()
    win_counts = pd.Series(window).value_counts().reindex(cities).fillna(0).to_numpy()
    expected = ref_counts / ref_counts.sum() * win_counts.sum()
    assert feature.chi2_pvalue == pytest.approx(
        stats.chisquare(win_counts, expected).pvalue, rel=1e-12
    )
    assert feature.test == "chi2"
    assert feature.psi == pytest.approx(_direct_psi(ref_counts, win_counts), abs=1e-12)
    assert feature.jensen_shannon == pytest.approx(
        distance.jensenshannon(ref_counts, win_counts, base=2), abs=1e-12
    )


def test_chi_square_is_zero_when_the_window_has_a_category_the_reference_lacks():
    profile = build_profile(pd.DataFrame({"city": ["a", "b", "c"] * 100}))
    feature = compare(profile, pd.DataFrame({"city": ["a", "b", "c", "z"] * 10})).features["city"]
    assert feature.chi2_pvalue == 0.0
    assert feature.unseen == 10
    assert feature.drifted


@pytest.mark.parametrize("effective", [20_000, 100_000, 500_000])
def test_large_sample_ks_pvalue_stays_close_to_kstwo(effective):
    # kstwo itself would take up to half a second a call here, so only a few points are checked.
    statistic = stats.kstwobign.isf(np.array([0.5, 0.05, 0.001])) / np.sqrt(effective)
    approximate = drift_statistics.ks_pvalue(statistic, 2 * effective, 2 * effective)
    exact = stats.kstwo.sf(statistic, effective)
    np.testing.assert_allclose(approximate, exact, rtol=2e-3)


def test_benjamini_hochberg_matches_the_textbook_procedure():
    pvalues = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    adjusted = drift_statistics.benjamini_hochberg(pvalues)
    # Sorted: 0.005, 0.01, 0.03, 0.04, 0.5 -> p * 5 / rank, then running minimum from the top.
    np.testing.assert_allclose(adjusted, [0.025, 0.05, 0.05, 0.025, 0.5])


def test_statistics_are_vectorised_over_features():
    rng = np.random.default_rng(2)
    reference = rng.integers(0, 50, size=(6, 10))
    window = rng.integers(0, 50, size=(6, 10))
    together = drift_statistics.jensen_shannon(reference, window)
    one_by_one = [
        drift_statistics.jensen_shannon(r, w) for r, w in zip(reference, window, strict=True)
    ]
    np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-15)
    assert together.shape == (6,)
    assert drift_statistics.psi(reference, window).shape == (6,)
    assert drift_statistics.chi2_pvalue(reference, window).shape == (6,)


def test_sketch_then_compare_equals_compare_on_the_frame(continuous):
    _, profile, windows = continuous
    frame = pd.DataFrame({"x": windows["shifted"]})
    assert compare(profile, sketch(profile, frame)) == compare(profile, frame)
