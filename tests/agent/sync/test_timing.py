"""The poll timing policy: pure functions of the hint, the jitter and the failures so far."""

from __future__ import annotations

import random

import pytest

from agent.sync.poller import backoff_delay, long_poll_delay, poll_delay


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


def test_poll_delay_follows_the_hint_and_never_exceeds_it(rng):
    delays = [poll_delay(10.0, 30.0, 0.2, rng) for _ in range(2000)]
    assert max(delays) <= 10.0
    assert min(delays) >= 8.0
    # Spread over the whole window, so a fleet started together drifts apart.
    assert max(delays) - min(delays) > 1.9
    assert 8.9 < sum(delays) / len(delays) < 9.1


@pytest.mark.parametrize(
    ("hint", "follow", "base"),
    [(None, True, 30.0), (0, True, 30.0), (10.0, False, 30.0), (5.0, True, 5.0)],
)
def test_poll_delay_falls_back_to_the_interval(rng, hint, follow, base):
    delay = poll_delay(hint, 30.0, 0.2, rng, follow_hint=follow)
    assert base * 0.8 <= delay <= base


def test_no_jitter_is_exact(rng):
    assert poll_delay(7.0, 30.0, 0.0, rng) == 7.0


def test_backoff_doubles_under_a_cap_with_full_jitter(rng):
    for failures, ceiling in [
        (1, 1.0),
        (2, 2.0),
        (3, 4.0),
        (6, 32.0),
        (9, 256.0),
        (10, 300.0),
        (50, 300.0),
    ]:
        delays = [backoff_delay(failures, 1.0, 300.0, rng) for _ in range(500)]
        assert min(delays) >= 0.0 and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.9  # full jitter: the whole range is used
        assert min(delays) < ceiling * 0.1


def test_backoff_never_overflows(rng):
    assert backoff_delay(10_000, 1.0, 300.0, rng) <= 300.0


@pytest.mark.parametrize(
    ("elapsed", "changed", "quick"),
    [(20.0, False, True), (0.01, True, True), (0.01, False, False)],
    ids=["held-by-server", "news", "server-does-not-long-poll"],
)
def test_long_poll_delay(rng, elapsed, changed, quick):
    delay = long_poll_delay(elapsed, 30.0, changed, rng)
    assert (delay is not None and 0 <= delay <= 0.25) if quick else delay is None
