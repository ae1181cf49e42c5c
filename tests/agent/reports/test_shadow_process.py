"""The shadow's child process: it runs the shadow, restarts after a crash, dies with the agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.reports.shadow import SHADOW_NICENESS, ShadowRunner
from agent.serving.slots import Deployed
from tests.agent.reports.support import (
    ColdStartShadow,
    ExitingShadow,
    FailingShadow,
    GatedShadow,
    WaitingShadow,
    event,
    rows_of,
)
from tests.support.models import wine_frame

ROOT = Path(__file__).resolve().parents[3]


def gone(pid: int, within: float) -> bool:
    """Tell whether process `pid` ends (or is a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def runner():
    runner = ShadowRunner(queue_size=1000, isolation="process", linger=0.05)
    yield runner
    runner.stop()


def submit_rows(runner: ShadowRunner, deployed: Deployed, start: int, stop: int) -> None:
    features, _ = wine_frame()
    for index in range(start, stop):
        runner.submit(event(deployed, rows_of(features, index, index + 1), f"r{index}"))


def shadowed(runner: ShadowRunner, wine_pair, count: int) -> tuple[Deployed, int]:
    """Shadow `count` requests with the real pair; return the deployment and the child's pid."""
    primary, shadow = wine_pair
    deployed = Deployed(primary=primary, shadow=shadow)
    submit_rows(runner, deployed, 0, count)
    assert runner.wait_idle()
    pid = runner.process.pid
    assert pid is not None and pid != os.getpid()
    return deployed, pid


def test_the_shadow_runs_in_a_lower_priority_child_and_agrees_as_in_process(runner, wine_pair):
    primary, shadow = wine_pair
    _, pid = shadowed(runner, wine_pair, 60)
    expected_nice = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + SHADOW_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, pid) == expected_nice
    metrics = runner.take()[("wine", 1, 2)]
    features, _ = wine_frame()
    rows = rows_of(features, 0, 60)
    mine, theirs = primary.predict(rows).predictions, shadow.predict(rows).predictions
    assert (metrics.requests, metrics.shadowed, metrics.shadow_errors) == (60, 60, 0)
    assert metrics.agreed == sum(a == b for a, b in zip(mine, theirs, strict=True))
    assert metrics.mean_abs_proba_diff is not None and metrics.mean_abs_proba_diff > 0
    assert metrics.shadow_latency.p50 is not None and metrics.shadow_latency.p50 > 0
    runner.stop()
    assert gone(pid, 5), "the child outlived stop()"


def test_prepare_starts_a_child_that_outlives_the_call(runner):
    runner.prepare()
    assert runner.wait_idle()
    pid = runner.process.pid
    assert pid is not None
    assert not gone(pid, 1.0)  # not tied to a short-lived thread
    runner.prepare()  # already running: nothing new
    assert runner.wait_idle()
    assert (runner.process.pid, runner.process_starts, runner.process_crashes) == (pid, 1, 0)


def test_a_killed_child_is_counted_and_a_new_one_takes_over(runner, wine_pair):
    deployed, first = shadowed(runner, wine_pair, 5)
    os.kill(first, signal.SIGKILL)
    assert gone(first, 5)
    submit_rows(runner, deployed, 5, 15)
    assert runner.wait_idle()
    assert runner.process.pid not in (None, first)
    assert (runner.process_crashes, runner.process_starts) == (1, 2)
    metrics = runner.take()[("wine", 1, 2)]
    assert (metrics.requests, metrics.shadowed, metrics.shadow_errors) == (15, 15, 0)


def test_a_child_dying_mid_batch_counts_its_rows_as_errors_then_recovers(runner, wine_pair):
    primary, shadow = wine_pair
    submit_rows(runner, Deployed(primary=primary, shadow=ExitingShadow(7)), 0, 4)  # type: ignore[arg-type]
    assert runner.wait_idle()
    crashes = runner.process_crashes
    assert crashes >= 1  # a batch is run as two calls (one timed alone), each kills the child
    submit_rows(runner, Deployed(primary=primary, shadow=shadow), 4, 10)
    assert runner.wait_idle()
    metrics = runner.take()
    assert (metrics[("wine", 1, 7)].shadow_errors, metrics[("wine", 1, 7)].shadowed) == (4, 0)
    assert metrics[("wine", 1, 2)].shadowed == 6
    assert (runner.process_crashes, runner.process_starts) == (crashes, crashes + 1)


def test_a_model_error_in_the_child_is_counted_and_the_child_lives_on(runner, wine_pair):
    primary, _ = wine_pair
    submit_rows(runner, Deployed(primary=primary, shadow=FailingShadow(8)), 0, 6)  # type: ignore[arg-type]
    assert runner.wait_idle()
    metrics = runner.take()[("wine", 1, 8)]
    assert (metrics.requests, metrics.shadowed, metrics.shadow_errors) == (6, 0, 6)
    assert (runner.process_crashes, runner.process_starts) == (0, 1)


def test_a_full_queue_drops_and_counts_while_the_child_is_busy(tmp_path: Path, wine_pair):
    primary, _ = wine_pair
    gate = tmp_path / "open"
    runner = ShadowRunner(queue_size=2, isolation="process", linger=0.0)
    try:
        deployed = Deployed(primary=primary, shadow=GatedShadow(9, gate))  # type: ignore[arg-type]
        started = time.perf_counter()
        submit_rows(runner, deployed, 0, 20)
        assert time.perf_counter() - started < 1.0  # the primary path never waited
        gate.touch()
        assert runner.wait_idle()
        metrics = runner.take()[("wine", 1, 9)]
    finally:
        runner.stop()
    assert metrics.requests == 20
    assert metrics.dropped >= 15  # a batch of at most three in flight, two queued
    assert metrics.dropped + metrics.shadow_errors == 20


AGENT = """
import sys, time
from agent.reports.shadow import ShadowRunner
runner = ShadowRunner()
runner.process.start()
print(runner.process.pid, flush=True)
time.sleep(60)
"""


def test_the_child_dies_when_the_agent_is_killed():
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(agent.stdout.readline())  # type: ignore[union-attr]
        assert not gone(child, 0.2)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        assert gone(child, 10), "the shadow's child outlived its agent"
    finally:
        agent.kill()
        agent.wait()
        agent.stdout.close()  # type: ignore[union-attr]


def test_stop_ends_a_child_stuck_in_its_model_and_starts_no_other(tmp_path: Path, wine_pair):
    primary, _ = wine_pair
    runner = ShadowRunner(queue_size=10, isolation="process", linger=0.0)
    runner.prepare()
    assert runner.wait_idle()
    pid = runner.process.pid
    stuck = Deployed(primary=primary, shadow=GatedShadow(9, tmp_path / "never"))  # type: ignore[arg-type]
    submit_rows(runner, stuck, 0, 1)
    time.sleep(0.5)  # the child is now waiting on a gate that never opens
    submit_rows(runner, stuck, 1, 4)  # queued behind it
    started = time.monotonic()
    runner.stop(timeout=1.0)
    assert time.monotonic() - started < 10
    assert gone(pid, 5)
    runner.wait_idle(timeout=10)  # the worker works through what was queued, with no child
    assert (runner.process.pid, runner.process_starts) == (None, 1)


@pytest.mark.parametrize("isolation", ["process", "thread"])
@pytest.mark.parametrize("model", [WaitingShadow, ColdStartShadow])
def test_shadow_latency_is_the_models_warm_cpu_time(wine_pair, isolation, model):
    """Not the waits for a core (it runs at niceness +10), nor a cold first call's costs."""
    primary, shadow = wine_pair
    runner = ShadowRunner(queue_size=1000, isolation=isolation, linger=0.05)
    try:
        deployed = Deployed(primary=primary, shadow=model(2, shadow))
        submit_rows(runner, deployed, 0, 5)
        assert runner.wait_idle()
        metrics = runner.take()[("wine", 1, 2)]
    finally:
        runner.stop()
    assert metrics.shadowed == 5 and metrics.shadow_errors == 0
    assert metrics.shadow_latency.p50 is not None
    assert 0 < metrics.shadow_latency.p99 < 40  # ms: neither the sleep nor the cold start
