"""A control plane answering slowly, resetting, failing or talking garbage (a proxy in the way):
the agent backs off, keeps serving, and converges once the answers are good again.
"""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest

from agent.local.state import read_state_file
from tests.reliability.conftest import enroll_agent
from tests.support.agent_process import eventually
from tests.support.operator import ROWS

pytestmark = pytest.mark.e2e

BAD_MODES = ("slow", "reset", "error", "garbage", "truncated", "wrong_type")
PHASE = 1.5  # seconds per bad mode
POLL_INTERVAL = 0.05  # without backoff the agent would poll 20 times a second


def predict_until(url: str, stop: threading.Event, answers: list[tuple[int, int | None]]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.TransportError):
                response = client.post(f"{url}/predict/net", json={"instances": ROWS})
                version = response.json().get("version") if response.status_code == 200 else None
                answers.append((response.status_code, version))
            time.sleep(0.02)


def test_the_agent_backs_off_keeps_serving_and_recovers(admin, proxy, small_models, tmp_path):
    admin.environment("network")
    admin.push("net", small_models[0])
    admin.push("net", small_models[1])
    first = admin.desire("network", "net", 1)
    agent = enroll_agent(
        admin,
        "network",
        tmp_path / "agent",
        url=proxy.url,
        TETHER_POLL_INTERVAL=str(POLL_INTERVAL),
        TETHER_BACKOFF_INITIAL="0.1",
        TETHER_BACKOFF_MAX="1",
        TETHER_REQUEST_TIMEOUT="1",  # "slow" answers after 2 s: the agent times out first
    ).start()
    stop = threading.Event()
    answers: list[tuple[int, int | None]] = []
    predictor = threading.Thread(target=predict_until, args=(agent.url, stop, answers))
    try:
        eventually(lambda: admin.converged("network", first), timeout=30)
        predictor.start()
        proxy.mode = BAD_MODES[0]
        started = time.monotonic()
        # A new revision waits behind the misbehaving proxy: every poll now gets a body (never a
        # 304 that "truncated" would pass intact), and none gets through. It is made once a
        # request met the bad proxy: any earlier one was answered by then.
        eventually(lambda: proxy.count(started) >= 1, timeout=10, interval=0.01)
        second = admin.desire("network", "net", 2)
        per_mode = {}
        for mode in BAD_MODES:
            since = time.monotonic()
            proxy.mode = mode
            time.sleep(PHASE)
            per_mode[mode] = proxy.count(since)
        span = time.monotonic() - started
        proxy.mode = "ok"
        received = proxy.count(started)
        # Bounded: polls back off (capped at 1 s, full jitter) plus a heartbeat a second; with
        # no backoff it would be over 20 requests a second.
        assert received <= 5 * span, (received, per_mode)
        assert all(count >= 1 for count in per_mode.values()), per_mode  # each mode was met
        state = read_state_file(agent.data_dir)
        assert state is not None and state.reachable is False and state.last_error
        assert state.accepted_revision < second  # no manifest got through
        eventually(lambda: admin.converged("network", second), timeout=30)
        eventually(lambda: answers[-1][1] == 2, timeout=10)
        stop.set()
        predictor.join()
        bad = [answer for answer in answers if answer[0] != 200]
        assert not bad, bad[:5]  # every prediction answered throughout
        assert len(answers) >= 50
        versions = [version for _, version in answers]
        assert versions[0] == 1 and versions[-1] == 2  # never a gap, v1 until the swap
        assert versions == sorted(versions)
    finally:
        stop.set()
        if predictor.is_alive():
            predictor.join()
        agent.stop()
