"""Drift decisions: Evidently's default tests, false alarms over 200 seeds, options, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from common.drift import build_profile, compare, sketch
from tests.drift.data import mixed_frame

SEEDS = 200


def _false_alarms(reference_rows: int, window_rows: int) -> tuple[dict[str, float], float]:
    flagged: dict[str, int] = {}
    datasets = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        profile = build_profile(mixed_frame(rng, reference_rows))
        report = compare(profile, sketch(profile, mixed_frame(rng, window_rows)))
        datasets += report.dataset_drift
        for name, feature in report.features.items():
            flagged[name] = flagged.get(name, 0) + feature.drifted
    return {name: n / SEEDS for name, n in flagged.items()}, datasets / SEEDS


def test_windows_from_the_reference_distribution_are_rarely_flagged_by_distance_tests():
    # More than 1000 reference values: normed Wasserstein >= 0.1 and Jensen-Shannon >= 0.1 decide.
    per_feature, dataset = _false_alarms(reference_rows=2000, window_rows=500)
    assert dataset == 0.0
    assert max(per_feature.values()) <= 0.15
    assert per_feature["city"] <= 0.02
    assert np.mean(list(per_feature.values())) <= 0.08


def test_windows_from_the_reference_distribution_are_rarely_flagged_by_p_value_tests():
    # At most 1000 reference values: KS p <= 0.05 and chi-square p < 0.05 decide, so about 5% of
    # features are flagged by design; chi-square, which takes the reference shares as exact, more.
    per_feature, dataset = _false_alarms(reference_rows=1000, window_rows=200)
    assert dataset <= 0.01
    numeric = [rate for name, rate in per_feature.items() if name != "city"]
    assert max(numeric) <= 0.10
    assert per_feature["city"] <= 0.18


@pytest.mark.parametrize("reference_rows", [1000, 5000], ids=["p-value tests", "distance tests"])
def test_a_shifted_window_is_flagged(reference_rows):
    rng = np.random.default_rng(41)
    profile = build_profile(mixed_frame(rng, reference_rows))
    report = compare(profile, mixed_frame(rng, 500, shift=0.5))
    assert report.dataset_drift
    assert report.share_drifted == 1.0
    assert {f.drifted for f in report.features.values()} == {True}


def test_default_tests_follow_evidently_by_reference_size():
    rng = np.random.default_rng(42)
    small = compare(build_profile(mixed_frame(rng, 1000)), mixed_frame(rng, 100))
    large = compare(build_profile(mixed_frame(rng, 1001)), mixed_frame(rng, 100))
    assert (small.features["normal"].test, small.features["city"].test) == ("ks", "chi2")
    assert (large.features["normal"].test, large.features["city"].test) == (
        "wasserstein",
        "jensen_shannon",
    )
    numeric = large.features["normal"]
    assert (numeric.threshold, numeric.score) == (0.1, numeric.wasserstein)
    assert small.features["normal"].score == small.features["normal"].ks_pvalue


def test_per_feature_overrides_of_test_and_threshold():
    rng = np.random.default_rng(43)
    profile = build_profile(mixed_frame(rng, 3000))
    window = mixed_frame(rng, 3000, shift=0.1)
    report = compare(
        profile,
        window,
        tests={"normal": "psi", "city": "chi2", "uniform": "ks"},
        thresholds={"normal": 0.0, "lognormal": 10.0},
    )
    assert (report.features["normal"].test, report.features["normal"].threshold) == ("psi", 0.0)
    assert report.features["normal"].drifted  # any PSI reaches a threshold of 0
    assert (
        report.features["lognormal"].test == "wasserstein"
        and not report.features["lognormal"].drifted
    )
    assert report.features["city"].test == "chi2" and report.features["city"].threshold == 0.05
    assert report.features["uniform"].score == report.features["uniform"].ks_pvalue


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tests": {"nope": "ks"}}, "unknown features"),
        ({"tests": {"city": "ks"}}, "tests\\['city'\\]"),
        ({"tests": {"normal": "chi2"}}, "tests\\['normal'\\]"),
        ({"thresholds": {"normal": -1.0}}, "thresholds\\['normal'\\]"),
        ({"thresholds": {"nope": 0.1}}, "unknown features"),
        ({"drift_share": 0.0}, "drift_share"),
        ({"fdr": 1.5}, "fdr"),
        ({"fdr": 0.05, "thresholds": {"normal": 0.01}}, "with fdr"),
    ],
)
def test_bad_options_are_refused_naming_the_field(options, message):
    profile = build_profile(mixed_frame(np.random.default_rng(44), 500))
    with pytest.raises(ValueError, match=message):
        compare(profile, mixed_frame(np.random.default_rng(45), 50), **options)


def test_drift_share_sets_how_many_features_make_dataset_drift():
    rng = np.random.default_rng(46)
    profile = build_profile(mixed_frame(rng, 3000))
    window = mixed_frame(rng, 1000)
    window["normal"] += 1.0
    window["uniform"] += 0.5
    report = compare(profile, window)
    assert report.n_drifted == 2 and report.share_drifted == pytest.approx(0.4)
    assert not report.dataset_drift
    assert compare(profile, window, drift_share=0.4).dataset_drift


def test_false_discovery_control_uses_p_values_and_flags_the_dataset_on_any_discovery():
    rng = np.random.default_rng(47)
    profile = build_profile(mixed_frame(rng, 3000))
    calm = compare(profile, mixed_frame(rng, 1000), fdr=0.05)
    assert {f.test for f in calm.features.values()} == {"ks", "chi2"}
    assert not calm.dataset_drift
    window = mixed_frame(rng, 1000)
    window["normal"] += 0.3
    report = compare(profile, window, fdr=0.05)
    normal = report.features["normal"]
    assert normal.drifted and normal.pvalue_adjusted <= 0.05
    assert normal.pvalue_adjusted >= normal.ks_pvalue
    assert report.dataset_drift and report.fdr == 0.05
    assert report.n_drifted == 1


def test_prediction_drift_uses_the_same_tests_on_the_outputs():
    rng = np.random.default_rng(48)
    frame = mixed_frame(rng, 3000)
    profile = build_profile(frame, predictions=rng.choice(["no", "yes"], 3000, p=[0.7, 0.3]))
    steady = compare(
        profile,
        sketch(profile, frame.iloc[:500], predictions=rng.choice(["no", "yes"], 500, p=[0.7, 0.3])),
    )
    assert steady.prediction_drift is False
    moved = sketch(
        profile, frame.iloc[:500], predictions=rng.choice(["no", "yes"], 500, p=[0.3, 0.7])
    )
    report = compare(profile, moved)
    assert report.prediction_drift is True
    assert report.predictions["__prediction__"].test == "jensen_shannon"
    assert not report.dataset_drift  # inputs did not move; predictions are not input features
    assert compare(profile, sketch(profile, frame.iloc[:500])).prediction_drift is None
