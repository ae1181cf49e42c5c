"""Awkward data never crashes and gives the results docs/drift.md documents."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.drift import DriftReport, build_profile, compare, sketch

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_float = st.floats(allow_nan=True, allow_infinity=True)
plain_float = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
awkward_float = st.one_of(
    plain_float, plain_float, st.sampled_from([math.nan, math.inf, -math.inf]), any_float
)
mixed_value = st.one_of(
    st.integers(-3, 3), st.text(max_size=2), st.booleans(), st.none(), awkward_float
)


def _frame(numbers: list[float], more: list[float], mixed: list[object]) -> pd.DataFrame:
    rows = max(len(numbers), len(more), len(mixed))
    pad = lambda values, filler: list(values) + [filler] * (rows - len(values))  # noqa: E731
    mixed_column = np.empty(rows, dtype=object)
    mixed_column[:] = pad(mixed, None)
    return pd.DataFrame(
        {"number": pad(numbers, math.nan), "more": pad(more, 1.5), "mixed": mixed_column}
    )


def _check_report(report: DriftReport) -> None:
    assert DriftReport.model_validate_json(report.model_dump_json()) == report
    for name, feature in report.features.items():
        figures = [
            feature.psi,
            feature.ks_statistic,
            feature.ks_pvalue,
            feature.wasserstein,
            feature.jensen_shannon,
            feature.chi2_pvalue,
        ]
        if feature.status != "ok":
            assert figures == [None] * 6 and not feature.drifted, name
            continue
        assert not any(f is not None and math.isnan(f) for f in figures), name
        assert feature.psi is not None and feature.psi >= 0
        assert feature.jensen_shannon is not None and 0 <= feature.jensen_shannon <= 1 + 1e-12
        if feature.kind == "numeric":
            assert 0 <= feature.ks_statistic <= 1 + 1e-12 and 0 <= feature.ks_pvalue <= 1
            assert feature.wasserstein >= 0
        else:
            assert 0 <= feature.chi2_pvalue <= 1
    compared = [f for f in report.features.values() if f.status == "ok"]
    assert report.n_features == len(compared)
    assert report.share_drifted == (
        sum(f.drifted for f in compared) / len(compared) if compared else 0
    )


@PROPERTY
@given(
    st.lists(awkward_float, max_size=60),
    st.lists(awkward_float, max_size=60),
    st.lists(mixed_value, max_size=60),
    st.lists(awkward_float, max_size=20),
    st.lists(mixed_value, max_size=20),
)
def test_awkward_frames_never_crash_and_give_defined_figures(
    numbers, more, mixed, live, live_mixed
):
    profile = build_profile(_frame(numbers, more, mixed), bins=20)
    window = _frame(live, [], live_mixed)
    report = compare(profile, sketch(profile, window))
    _check_report(report)
    for name in ("number", "more", "mixed"):
        counted = report.features[name]
        assert counted.count + counted.missing + counted.infinite + counted.absent == len(window)


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(31)
    rows = 3000
    return build_profile(
        pd.DataFrame(
            {
                "x": rng.normal(size=rows),
                "constant": np.full(rows, 7.0),
                "nothing": np.full(rows, np.nan),
                "city": rng.choice(["lyon", "paris", "nice"], rows),
                "mixed": np.array([1, "a", 2.5, None, True, 1.0] * (rows // 6), dtype=object),
            }
        )
    )


def test_an_empty_window_reports_every_feature_empty_and_no_drift(profile):
    for empty in (None, [], pd.DataFrame({"x": []})):
        report = compare(profile, sketch(profile, empty))
        assert {f.status for f in report.features.values()} == {"empty"}
        assert (report.window_rows, report.n_features, report.share_drifted) == (0, 0, 0.0)
        assert not report.dataset_drift
        _check_report(report)


def test_a_single_row_gives_defined_figures(profile):
    report = compare(
        profile,
        sketch(profile, {"x": 0.1, "constant": 7, "nothing": None, "city": "lyon", "mixed": "a"}),
    )
    x = report.features["x"]
    assert x.status == "ok" and x.count == 1
    assert x.ks_pvalue == pytest.approx(1.0) or 0 <= x.ks_pvalue <= 1
    assert x.wasserstein == pytest.approx(
        np.mean(np.abs(np.random.default_rng(31).normal(size=3000) - 0.1)) / 1.0, rel=0.1
    )
    assert report.features["nothing"].status == "empty"
    _check_report(report)


def test_nan_and_inf_are_counted_apart_and_left_out(profile):
    window = pd.DataFrame({"x": [0.0, np.nan, np.inf, -np.inf, 0.5, None]})
    x = compare(profile, window).features["x"]
    assert (x.count, x.missing, x.infinite) == (2, 2, 2)
    assert compare(profile, pd.DataFrame({"x": [np.nan, np.inf]})).features["x"].status == "empty"


def test_a_constant_feature_is_a_category_that_drifts_when_another_value_shows(profile):
    assert profile.features["constant"].kind == "categorical"
    same = compare(profile, pd.DataFrame({"constant": [7.0] * 50})).features["constant"]
    assert (same.jensen_shannon, same.chi2_pvalue, same.drifted) == (0.0, 1.0, False)
    other = compare(profile, pd.DataFrame({"constant": [7.0] * 25 + [8.0] * 25})).features[
        "constant"
    ]
    assert other.unseen == 25 and other.chi2_pvalue == 0.0 and other.drifted


def test_an_all_missing_reference_column_is_reported_empty(profile):
    assert profile.features["nothing"].count == 0
    report = compare(profile, pd.DataFrame({"nothing": [1.0, 2.0], "x": [0.0, 1.0]}))
    assert report.features["nothing"].status == "empty"
    assert report.features["nothing"].unseen == 2


def test_unseen_categories_are_counted_and_drive_chi_square_to_zero(profile):
    city = compare(profile, pd.DataFrame({"city": ["lyon", "rome", "oslo", None]})).features["city"]
    assert (city.count, city.unseen, city.missing) == (3, 2, 1)
    assert city.chi2_pvalue == 0.0


def test_mixed_types_become_canonical_category_keys(profile):
    assert profile.features["mixed"].categories == ["1", "2.5", "True", "a"]
    mixed = compare(profile, pd.DataFrame({"mixed": [1.0, np.int64(1), "1", True, 2.5]})).features[
        "mixed"
    ]
    # 1.0, numpy 1 and "1" are the same key "1"; True is "True": nothing is unseen.
    assert mixed.unseen == 0 and mixed.count == 5


def test_strings_in_a_numeric_feature_count_as_missing(profile):
    x = compare(profile, [{"x": "12"}, {"x": "abc"}, {"x": 1.0}]).features["x"]
    assert (x.count, x.missing) == (1, 2)


def test_a_feature_missing_from_the_window_is_reported_missing_not_drifted(profile):
    report = compare(profile, pd.DataFrame({"city": ["nice"] * 40}))
    x = report.features["x"]
    assert (x.status, x.absent, x.drifted, x.wasserstein) == ("missing", 40, False, None)
    assert report.n_features == 1  # only city was compared
    partly = compare(profile, [{"x": 0.2}, {"city": "lyon"}]).features["x"]
    assert (partly.status, partly.count, partly.absent) == ("ok", 1, 1)


def test_values_far_outside_the_range_give_large_but_finite_distances(profile):
    x = compare(profile, pd.DataFrame({"x": [1e300, -1e300, 0.0]})).features["x"]
    assert x.out_of_range == 2
    assert 1e299 < x.wasserstein < math.inf and x.drifted
    _check_report(compare(profile, pd.DataFrame({"x": [1e300, -1e300, 0.0]})))


def test_numbers_beyond_1e300_count_as_infinite(profile):
    x = compare(profile, pd.DataFrame({"x": [1.7e308, -2e300, 10**400, 0.0]})).features["x"]
    assert (x.count, x.infinite, x.out_of_range) == (1, 3, 0)
    row = sketch(profile, {"x": 10**400}).features["x"]
    assert row.infinite == 1
