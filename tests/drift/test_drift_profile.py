"""Reference profiles: what build_profile keeps, in which form, and how small it stays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.drift import PREDICTION, ReferenceProfile, build_profile
from common.drift.profile import CategoricalProfile, NumericProfile
from tests.drift.data import numeric_frame


def test_numeric_feature_keeps_moments_edges_counts_and_deciles():
    rng = np.random.default_rng(1)
    values = rng.normal(10, 2, 50_000)
    values[:30] = np.nan
    values[30:40] = np.inf
    feature = build_profile(pd.DataFrame({"x": values})).features["x"]
    finite = values[np.isfinite(values)]
    assert isinstance(feature, NumericProfile)
    assert (feature.count, feature.missing, feature.infinite) == (len(finite), 30, 10)
    assert feature.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert feature.std == pytest.approx(finite.std(), rel=1e-12)
    assert (feature.min, feature.max) == (finite.min(), finite.max())
    edges = np.array(feature.edges)
    assert np.all(np.diff(edges) > 0)
    assert edges[0] <= finite.min() and edges[-1] > finite.max()
    assert len(feature.counts) == len(edges) - 1 == len(feature.positions)
    assert sum(feature.counts) == feature.count
    assert 1000 <= len(feature.counts) <= 1000 + 40  # the extreme values add a few tail bins
    assert len(feature.deciles) == 9 and set(feature.deciles) <= set(feature.edges)
    # Fine bins hold about equal shares: they are reference quantiles.
    assert max(feature.counts[40:-40]) <= 2 * len(finite) / 1000


def test_discrete_numbers_get_one_bin_per_distinct_value():
    rng = np.random.default_rng(2)
    values = rng.poisson(30, 10_000).astype(float)
    feature = build_profile(pd.DataFrame({"x": values}), bins=1000).features["x"]
    distinct, counts = np.unique(values, return_counts=True)
    assert feature.discrete
    assert feature.counts == counts.tolist()
    np.testing.assert_allclose(feature.edges[:-1], distinct, rtol=1e-3)
    assert all(p == 0 for p in feature.positions)


def test_numbers_with_at_most_five_distinct_values_are_categorical():
    frame = pd.DataFrame({"few": [1, 2, 3, 4, 5] * 24, "six": [1, 2, 3, 4, 5, 6] * 20})
    profile = build_profile(frame)
    assert profile.features["few"].kind == "categorical"
    assert profile.features["few"].categories == ["1", "2", "3", "4", "5"]
    assert profile.features["six"].kind == "numeric"


def test_categorical_keeps_the_top_100_categories_and_the_rest_as_other():
    values = [f"c{i:03d}" for i in range(150) for _ in range(150 - i)]
    values += [None] * 7
    feature = build_profile(pd.DataFrame({"c": values})).features["c"]
    assert isinstance(feature, CategoricalProfile)
    assert len(feature.categories) == 100
    assert feature.categories[:3] == ["c000", "c001", "c002"]
    assert feature.counts[:3] == [150, 149, 148]
    assert feature.other == sum(150 - i for i in range(100, 150))
    assert (feature.missing, feature.distinct, feature.count) == (7, 150, len(values) - 7)


def test_the_categorical_option_forces_numbers_to_categories():
    frame = pd.DataFrame({"zip": np.arange(1000) % 40 + 75000})
    profile = build_profile(frame, categorical=["zip"])
    assert profile.features["zip"].kind == "categorical"
    assert "75000" in profile.features["zip"].categories
    with pytest.raises(ValueError, match="unknown features"):
        build_profile(frame, categorical=["nope"])


@pytest.mark.parametrize(
    "frame",
    [
        np.column_stack([np.arange(100.0), np.arange(100.0) % 3]),
        {"age": np.arange(100.0), "group": np.arange(100.0) % 3},
        [{"age": float(i), "group": i % 3} for i in range(100)],
    ],
    ids=["array", "columns", "rows"],
)
def test_arrays_mappings_and_rows_profile_like_a_dataframe(frame):
    expected = build_profile(pd.DataFrame({"age": np.arange(100.0), "group": np.arange(100) % 3}))
    names = ["age", "group"] if isinstance(frame, np.ndarray) else None
    assert build_profile(frame, names=names) == expected


def test_predictions_are_profiled_under_reserved_names():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=500)})
    labels = build_profile(frame, predictions=rng.choice(["cat", "dog"], 500))
    assert list(labels.predictions) == [PREDICTION]
    assert labels.predictions[PREDICTION].kind == "categorical"
    scores = build_profile(frame, predictions=rng.normal(size=500))
    assert scores.predictions[PREDICTION].kind == "numeric"
    probabilities = rng.dirichlet([1, 1, 1], 500)
    by_class = build_profile(
        frame, predictions=pd.DataFrame(probabilities, columns=["a", "b", "c"])
    )
    assert list(by_class.predictions) == [f"{PREDICTION}.a", f"{PREDICTION}.b", f"{PREDICTION}.c"]
    assert (
        next(iter(build_profile(frame, predictions=probabilities).predictions)) == f"{PREDICTION}.0"
    )
    with pytest.raises(ValueError, match="predictions for"):
        build_profile(frame, predictions=np.zeros(10))
    with pytest.raises(ValueError, match="reserved"):
        build_profile(pd.DataFrame({PREDICTION: [1.0, 2.0]}))


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="bins"):
        build_profile(pd.DataFrame({"x": [1.0]}), bins=0)
    with pytest.raises(ValueError, match="duplicated"):
        build_profile(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(ValueError, match="names given"):
        build_profile(np.zeros((3, 2)), names=["only-one"])
    with pytest.raises(TypeError):
        build_profile(42)


def test_profile_round_trips_through_json_and_its_digest_names_its_content():
    frame = pd.DataFrame(
        {"x": np.arange(3000.0) % 97, "c": np.array(list("abc"))[np.arange(3000) % 3]}
    )
    profile = build_profile(frame, predictions=np.arange(3000.0) % 13)
    assert ReferenceProfile.model_validate_json(profile.model_dump_json()) == profile
    assert len(profile.digest) == 64
    assert build_profile(frame, predictions=np.arange(3000.0) % 13).digest == profile.digest
    assert build_profile(frame, predictions=np.arange(3000.0) % 11).digest != profile.digest


def test_a_profile_of_20_numeric_features_with_1000_bins_is_under_400_kb():
    frame = numeric_frame(np.random.default_rng(5), 1_000_000)
    profile = build_profile(frame, bins=1000)
    assert len(profile.features) == 20
    assert all(len(f.counts) >= 1000 for f in profile.features.values())
    assert len(profile.model_dump_json()) < 400_000
