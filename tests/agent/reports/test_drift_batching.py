"""Drift windows fold queued rows into the sketch in batches: same counts, none lost."""

from __future__ import annotations

import dataclasses

import pytest

from agent.reports.drift import DriftWindows
from agent.serving.slots import Deployed
from common.drift import build_profile, sketch
from tests.agent.reports.support import event, rows_of
from tests.support.models import wine_frame


@pytest.fixture(scope="module")
def profile(wine_pair):
    primary, _ = wine_pair
    features, _ = wine_frame()
    rows = features.to_dict(orient="records")
    return build_profile(features, predictions=primary.predict(rows).predictions)


def serving(profile, fold_rows: int) -> DriftWindows:
    windows = DriftWindows(fold_rows=fold_rows)
    windows.serve("wine", 1, profile)
    return windows


@pytest.mark.parametrize("fold_rows", [1, 7, 10_000])
def test_a_batched_window_equals_the_sketch_of_the_same_rows(wine_pair, profile, fold_rows):
    primary, _ = wine_pair
    features, _ = wine_frame()
    windows = serving(profile, fold_rows)
    deployed = Deployed(primary=primary)
    start, sizes = 0, [1, 3, 1, 1, 5, 2] * 8  # requests of several rows among single rows
    for index, size in enumerate(sizes):
        windows.observe(event(deployed, rows_of(features, start, start + size), f"r{index}"))
        start += size
    rows = rows_of(features, 0, start)
    direct = sketch(profile, rows, predictions=primary.predict(rows).predictions)
    one_by_one = sketch(profile)
    for row, prediction in zip(rows, primary.predict(rows).predictions, strict=True):
        one_by_one.add(row, predictions=prediction)
    version, requests, body = windows.take()["wine"]
    assert (version, requests, body.sketch.rows) == (1, start, start)
    assert body.sketch == direct == one_by_one
    assert body.report is not None and body.report.window_rows == start


def test_a_bad_request_is_skipped_alone_and_the_rest_are_counted(wine_pair, profile):
    primary, _ = wine_pair
    features, _ = wine_frame()
    windows = serving(profile, 10_000)
    deployed = Deployed(primary=primary)
    good = [event(deployed, rows_of(features, i, i + 1), f"r{i}") for i in range(6)]
    bad = event(deployed, rows_of(features, 6, 8), "bad")
    broken = dataclasses.replace(bad.prediction, predictions=bad.prediction.predictions[:1])
    for item in [*good[:3], dataclasses.replace(bad, prediction=broken), *good[3:]]:
        windows.observe(item)
    _, requests, body = windows.take()["wine"]
    assert (requests, body.sketch.rows, windows.skipped) == (8, 6, 1)
    rows = rows_of(features, 0, 6)
    assert body.sketch == sketch(profile, rows, predictions=primary.predict(rows).predictions)


def test_rows_of_a_window_cut_mid_fold_go_to_that_window_only(wine_pair, profile):
    primary, _ = wine_pair
    features, _ = wine_frame()
    windows = serving(profile, 4)
    deployed = Deployed(primary=primary)
    for index in range(10):
        windows.observe(event(deployed, rows_of(features, index, index + 1), f"r{index}"))
    first = windows.take()["wine"][2].sketch
    for index in range(10, 13):
        windows.observe(event(deployed, rows_of(features, index, index + 1), f"r{index}"))
    second = windows.take()["wine"][2].sketch
    assert (first.rows, second.rows) == (10, 3)
    assert first.merge(second) == sketch(
        profile,
        rows_of(features, 0, 13),
        predictions=primary.predict(rows_of(features, 0, 13)).predictions,
    )
