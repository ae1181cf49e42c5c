"""Shadow comparisons, drift windows, the outbox and the reporter, with real models and data."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.local.outbox import Outbox
from agent.reports.drift import DriftWindows
from agent.reports.reporter import Reporter
from agent.reports.shadow import ShadowRunner
from agent.serving.events import Feedback
from agent.serving.slots import Deployed
from common.drift import build_profile
from common.reports import ReportAck
from tests.agent.reports.support import event, rows_of
from tests.support.models import wine_frame


def test_shadow_agreement_and_feedback_accuracy_on_the_same_requests(wine_pair):
    primary, shadow = wine_pair
    features, target = wine_frame()
    runner = ShadowRunner(queue_size=1000)
    deployed = Deployed(primary=primary, shadow=shadow)
    expected_agree = 0
    for index in range(len(features)):
        row = rows_of(features, index, index + 1)
        runner.submit(event(deployed, row, f"r{index}"))
        expected_agree += primary.predict(row).predictions[0] == shadow.predict(row).predictions[0]
    assert runner.wait_idle()
    matched = runner.feedback([Feedback("wine", f"r{i}", int(target.iloc[i])) for i in range(100)])
    assert matched == 100
    metrics = runner.take()[("wine", 1, 2)]
    runner.stop()
    assert (metrics.requests, metrics.shadowed, metrics.dropped) == (178, 178, 0)
    assert metrics.agreed == expected_agree
    assert metrics.agreement == pytest.approx(expected_agree / 178)
    assert metrics.labelled == 100
    truth = target.iloc[:100].tolist()
    primary_right = sum(
        primary.predict(rows_of(features, i, i + 1)).predictions[0] == truth[i] for i in range(100)
    )
    assert metrics.primary_correct == primary_right
    assert metrics.primary_latency.p50 == pytest.approx(1.0)
    assert metrics.shadow_latency.p95 is not None and metrics.shadow_latency.p95 > 0


class SlowShadow:
    """A shadow that blocks until released, to fill the queue."""

    kind = "classifier"
    version = 9

    def __init__(self) -> None:
        self.release = threading.Event()

    def predict(self, rows):
        self.release.wait(5)
        raise RuntimeError("shadow broke")


def test_a_full_queue_drops_and_counts_without_blocking(wine_pair):
    primary, _ = wine_pair
    slow = SlowShadow()
    runner = ShadowRunner(queue_size=2, isolation="thread")  # the shadow holds a threading.Event
    deployed = Deployed(primary=primary, shadow=slow)  # type: ignore[arg-type]
    features, _ = wine_frame()
    started = time.perf_counter()
    for index in range(20):
        runner.submit(event(deployed, rows_of(features, index, index + 1), f"r{index}"))
    assert time.perf_counter() - started < 1.0  # the primary path never waited
    slow.release.set()
    assert runner.wait_idle()
    metrics = runner.take()[("wine", 1, 9)]
    runner.stop()
    assert metrics.requests == 20
    assert metrics.dropped >= 15  # a batch of at most three in flight, two queued
    assert metrics.dropped + metrics.shadow_errors == 20


def test_drift_window_counts_rows_and_compares_on_take(wine_pair):
    primary, _ = wine_pair
    features, _ = wine_frame()
    profile = build_profile(
        features, predictions=primary.predict(features.to_dict(orient="records")).predictions
    )
    windows = DriftWindows()
    windows.serve("wine", 1, profile)
    deployed = Deployed(primary=primary, shadow=None)
    for index in range(50):
        windows.observe(event(deployed, rows_of(features, index, index + 1), f"r{index}"))
    taken = windows.take()
    version, requests, body = taken["wine"]
    assert (version, requests, body.sketch.rows) == (1, 50, 50)
    assert body.report is not None and body.report.window_rows == 50
    assert windows.take() == {}  # a new, empty window


def test_drift_window_without_profile_says_why(wine_pair):
    primary, _ = wine_pair
    features, _ = wine_frame()
    windows = DriftWindows()
    windows.serve("wine", 1, None)
    windows.observe(event(Deployed(primary=primary), rows_of(features, 0, 3), "r"))
    _, requests, body = windows.take()["wine"]
    assert requests == 3 and body.sketch is None and "no reference profile" in body.reason


def test_outbox_survives_reopen_and_drops_only_acknowledged(tmp_path: Path, wine_pair):
    primary, shadow = wine_pair
    features, _ = wine_frame()
    runner, windows = ShadowRunner(), DriftWindows()
    windows.serve("wine", 1, None)
    deployed = Deployed(primary=primary, shadow=shadow)
    for index in range(10):
        item = event(deployed, rows_of(features, index, index + 1), f"r{index}")
        runner.submit(item)
        windows.observe(item)
    runner.wait_idle()
    outbox = Outbox(tmp_path / "outbox.db")
    reports = Reporter(runner, windows, outbox).cut()
    runner.stop()
    assert sorted(r.kind for r in reports) == ["drift", "shadow"]
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    assert reopened.depth() == 2
    sent: list[list[str]] = []

    def half_acknowledged(batch):
        sent.append([r.id for r in batch])
        return ReportAck(stored=[batch[0].id], duplicates=[])

    reporter = Reporter(ShadowRunner(), DriftWindows(), reopened)
    assert reporter.flush(half_acknowledged) == 2  # the second pass sends what was left
    assert sent[1] == [sent[0][1]]
    assert reopened.depth() == 0


def test_flush_stops_when_nothing_is_acknowledged(tmp_path: Path, wine_pair):
    outbox = Outbox(tmp_path / "outbox.db")
    primary, shadow = wine_pair
    runner = ShadowRunner()
    features, _ = wine_frame()
    runner.submit(event(Deployed(primary=primary, shadow=shadow), rows_of(features, 0, 1), "r"))
    runner.wait_idle()
    reporter = Reporter(runner, DriftWindows(), outbox)
    reporter.cut()
    runner.stop()
    assert reporter.flush(lambda batch: ReportAck(stored=[], duplicates=[])) == 0
    assert outbox.depth() == 1


def test_a_full_disk_keeps_the_window_for_the_next_cut(tmp_path: Path, wine_pair):
    """SQLite's own 'database or disk is full', from a page cap: the window waits, then lands."""
    primary, _ = wine_pair
    features, _ = wine_frame()
    profile = build_profile(
        features, predictions=primary.predict(features.to_dict(orient="records")).predictions
    )
    windows = DriftWindows()
    windows.serve("wine", 1, profile)  # a report with a sketch: larger than a free page
    deployed = Deployed(primary=primary)
    outbox = Outbox(tmp_path / "outbox.db")
    reporter = Reporter(ShadowRunner(), windows, outbox)
    pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
    outbox._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from here on

    windows.observe(event(deployed, rows_of(features, 0, 5), "r0"))
    first = reporter.cut()
    assert [r.requests for r in first] == [5]  # rows
    assert outbox.depth() == 0 and reporter.unsaved == first

    outbox._db.execute("PRAGMA max_page_count = 1000000")  # room again
    windows.observe(event(deployed, rows_of(features, 5, 10), "r1"))
    second = reporter.cut()
    assert reporter.unsaved == []
    stored = {r.id: r for r in outbox.pending()}
    assert set(stored) == {first[0].id, second[0].id}
    assert outbox.put([first[0]]) == 0  # stored once: the transaction that failed left nothing
