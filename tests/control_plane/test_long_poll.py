"""The wait room: one long-poll per caller, a bounded number in all."""

from __future__ import annotations

import threading
import time

from control_plane.long_poll import WaitRoom
from control_plane.settings import ControlPlaneSettings


def test_a_newer_wait_from_the_same_caller_displaces_the_older():
    room = WaitRoom(capacity=2)
    with room.seat("agent-1", "production") as first:
        assert first is not None and not first.displaced
        with room.seat("agent-1", "production") as second:
            assert second is not None
            started = time.monotonic()
            first.pause(5)
            assert first.displaced and time.monotonic() - started < 1  # at once, not after 5 s
            assert not second.displaced
            assert room.waiting == 1
        # The older wait leaving must not free the seat the newer one holds.
    assert room.waiting == 0


def test_the_older_wait_leaving_keeps_the_newer_seated():
    room = WaitRoom(capacity=1)
    older = room.seat("agent-1", "production")
    first = older.__enter__()
    with room.seat("agent-1", "production") as second:
        older.__exit__(None, None, None)
        assert room.waiting == 1
        with room.seat("agent-2", "production") as refused:
            assert refused is None  # the newer wait still holds the only seat
        assert second is not None and not second.displaced
    assert first is not None and first.displaced
    assert room.waiting == 0


def test_past_capacity_a_caller_gets_no_seat_until_one_leaves():
    room = WaitRoom(capacity=2)
    with room.seat("a", "production") as a, room.seat("b", "production") as b:
        assert a is not None and b is not None
        with room.seat("c", "production") as c:
            assert c is None
    with room.seat("c", "production") as c:
        assert c is not None


def test_zero_capacity_turns_long_polls_into_short_polls():
    with WaitRoom(capacity=0).seat("a", "production") as seat:
        assert seat is None


def test_a_displaced_wait_wakes_within_milliseconds():
    room = WaitRoom(capacity=4)
    woke = []

    def wait() -> None:
        with room.seat("agent-1", "production") as seat:
            assert seat is not None
            started = time.monotonic()
            seat.pause(10)
            woke.append(time.monotonic() - started)

    waiter = threading.Thread(target=wait)
    waiter.start()
    while room.waiting == 0:
        time.sleep(0.001)
    with room.seat("agent-1", "production"):
        waiter.join(timeout=5)
    assert woke and woke[0] < 1.0


def test_capacity_defaults_to_half_the_threads_and_can_be_set():
    assert ControlPlaneSettings(threads=8).long_poll_capacity == 4
    assert ControlPlaneSettings(threads=1).long_poll_capacity == 0
    assert ControlPlaneSettings(threads=8, long_poll_slots=7).long_poll_capacity == 7


def test_an_announced_change_wakes_the_waits_of_its_environment_only():
    room = WaitRoom(capacity=4)
    with room.seat("a", "production") as prod, room.seat("b", "staging") as staging:
        assert prod is not None and staging is not None
        room.wake("production")
        started = time.monotonic()
        prod.pause(5)
        assert time.monotonic() - started < 1 and not prod.displaced
        started = time.monotonic()
        staging.pause(0.2)
        assert time.monotonic() - started >= 0.2  # not woken: its environment did not change
        room.wake("")  # every environment: the feed came back and may have missed changes
        started = time.monotonic()
        staging.pause(5)
        assert time.monotonic() - started < 1
