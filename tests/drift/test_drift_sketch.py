"""Window sketches: rows and batches count alike, and merging is exact and associative."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.drift import PREDICTION, ProfileMismatch, WindowSketch, build_profile, compare, sketch
from tests.drift.data import mixed_frame

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(21)
    return build_profile(
        mixed_frame(rng, 5000), predictions=rng.choice(["no", "yes"], 5000), bins=200
    )


# Values a live row may carry: in and out of the reference range, missing, infinite, of the
# wrong type, and categories the profile never saw.
numbers = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, None, "n/a", True, 0, 12]),
)
cities = st.one_of(st.sampled_from(["lyon", "paris", "nice", "rome", "", None]), st.integers(0, 3))
rows = st.fixed_dictionaries(
    {"normal": numbers, "city": cities},
    optional={"lognormal": numbers, "uniform": numbers, "counts": numbers},
)


@PROPERTY
@given(
    st.lists(rows, max_size=30),
    st.lists(st.sampled_from(["no", "yes", "maybe", math.nan]), max_size=30),
)
def test_adding_rows_one_by_one_equals_sketching_them_together(profile, batch, labels):
    labels = (labels + ["no"] * len(batch))[: len(batch)]
    one_by_one = sketch(profile)
    for row, label in zip(batch, labels, strict=True):
        one_by_one.add(row, predictions=label)
    together = sketch(profile, batch, predictions=labels) if batch else sketch(profile)
    assert one_by_one == together
    assert one_by_one.rows == len(batch)
    for name, state in one_by_one.features.items():
        assert state.count + state.missing + state.infinite + state.absent == len(batch), name


@PROPERTY
@given(st.lists(rows, max_size=40), st.data())
def test_merge_is_exact_associative_and_commutative(profile, batch, data):
    cut_one = data.draw(st.integers(0, len(batch)))
    cut_two = data.draw(st.integers(cut_one, len(batch)))
    a, b, c = (
        sketch(profile, part) for part in (batch[:cut_one], batch[cut_one:cut_two], batch[cut_two:])
    )
    whole = sketch(profile, batch)
    assert a.merge(b, c) == whole
    assert a.merge(b).merge(c) == a.merge(b.merge(c)) == whole
    assert b.merge(a) == a.merge(b)


@PROPERTY
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=50),
    st.integers(0, 50),
)
def test_merge_stays_exact_for_any_float_including_huge_and_tiny_ones(profile, values, cut):
    frame = pd.DataFrame({"normal": values})
    cut = min(cut, len(values))
    whole = sketch(profile, frame)
    assert sketch(profile, frame.iloc[:cut]).merge(sketch(profile, frame.iloc[cut:])) == whole
    state = whole.features["normal"]
    # Past 1e300 a number counts as infinite (docs/drift.md).
    assert state.count == sum(abs(v) <= 1e300 for v in values)
    assert state.missing == sum(math.isnan(v) for v in values)
    assert state.infinite == sum(abs(v) > 1e300 for v in values)


def test_out_of_range_sums_are_exact_where_float_addition_is_not(profile):
    low = profile.features["normal"].edges[0]
    values = [low - 1e16, low - 1.0, low - 1.0, low - 3.0]
    state = sketch(profile, pd.DataFrame({"normal": values})).features["normal"]
    exact = sum((Fraction(v) for v in values), Fraction(0))
    assert sum(values) != exact  # float addition drops the small terms
    assert sum((Fraction(t) for t in state.below_sum), Fraction(0)) == exact
    assert state.below == 4


def test_a_dataframe_a_mapping_of_columns_and_rows_sketch_alike(profile):
    frame = mixed_frame(np.random.default_rng(22), 300)
    expected = sketch(profile, frame)
    assert sketch(profile, frame.to_dict("records")) == expected
    assert sketch(profile, {name: frame[name].to_numpy() for name in frame}) == expected
    # Large batches count in threads, and still the same way.
    big = mixed_frame(np.random.default_rng(23), 250_000)
    halves = sketch(profile, big.iloc[:1000]).merge(sketch(profile, big.iloc[1000:]))
    assert sketch(profile, big) == halves


def test_a_sketch_round_trips_through_json_and_can_go_on_after_binding(profile):
    frame = mixed_frame(np.random.default_rng(24), 200)
    window = sketch(profile, frame.iloc[:100])
    loaded = WindowSketch.model_validate_json(window.model_dump_json())
    assert loaded == window
    with pytest.raises(RuntimeError, match="bind"):
        loaded.add(frame.iloc[100:])
    loaded.bind(profile).add(frame.iloc[100:])
    assert loaded == sketch(profile, frame)


def test_sketches_of_different_profiles_do_not_mix(profile):
    other = build_profile(mixed_frame(np.random.default_rng(25), 1000))
    with pytest.raises(ProfileMismatch):
        sketch(profile).merge(sketch(other))
    with pytest.raises(ProfileMismatch):
        compare(other, sketch(profile))
    tampered = sketch(profile)
    tampered.features["normal"].counts.append(0)
    with pytest.raises(ProfileMismatch):
        compare(profile, tampered)


def test_predictions_of_several_columns_take_a_mapping_or_a_sequence_per_row():
    rng = np.random.default_rng(26)
    frame = pd.DataFrame({"x": rng.normal(size=2000)})
    probabilities = pd.DataFrame(rng.dirichlet([2, 1], 2000), columns=["ham", "spam"])
    profile = build_profile(frame, predictions=probabilities)
    by_name, by_position = sketch(profile), sketch(profile)
    for i in range(50):
        by_name.add({"x": frame.x[i]}, predictions=probabilities.iloc[i].to_dict())
        by_position.add({"x": frame.x[i]}, predictions=probabilities.iloc[i].tolist())
    batch = sketch(profile, frame.iloc[:50], predictions=probabilities.iloc[:50])
    assert by_name == batch
    assert by_position == batch
    assert sketch(profile, frame.iloc[:50], predictions=probabilities.iloc[:50].to_numpy()) == batch
    assert list(batch.predictions) == [f"{PREDICTION}.ham", f"{PREDICTION}.spam"]
    with pytest.raises(ValueError, match="several columns"):
        by_name.add({"x": 1.0}, predictions=0.5)


def test_adding_one_row_is_cheap():
    rng = np.random.default_rng(27)
    columns = {f"f{i}": rng.normal(size=20_000) for i in range(18)}
    columns["city"] = rng.choice(["a", "b", "c", "d"], 20_000)
    columns["flag"] = rng.integers(0, 2, 20_000)
    profile = build_profile(pd.DataFrame(columns))
    live = [dict(row) for row in pd.DataFrame(columns).iloc[:2000].to_dict("records")]
    window = sketch(profile)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for row in live:
            window.add(row)
        best = min(best, (time.perf_counter() - start) / len(live))
    # 10-20 us for 20 features here, 80 us when the machine is shared; a row through pandas
    # would take milliseconds, which is what this bound catches.
    assert best < 500e-6
    assert window.rows == 3 * len(live)
