"""Bound the long-polls one worker holds, so that no client can starve the API.

A long-poll is a manifest request the server holds open until the agent's revision changes.
Each one held costs whatever the server pays for a request in flight (today a worker thread),
so two bounds apply, per worker process:

- one wait per caller: a newer wait from the same caller (the same token asking for the same
  agent) displaces the older one, which is answered at once (an agent that reconnects, or a
  client that opens twenty waits, holds one seat, never twenty);
- `capacity` waits in all: beyond it a poll is answered at once with the poll hint, as a short
  poll is, so the rest of the worker's capacity stays free for every other request.

Neither bound changes an answer's meaning: a displaced or unseated wait is a 304 the agent
would have had at the deadline, only sooner.

A held wait looks at its revision again every `step` seconds, and at once when woken: on
PostgreSQL a change made through any replica is announced (control_plane/change_feed.py) and
wakes every seat, so the step is only the fallback for when announcements are not arriving.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# How often a held long-poll reads its revision: without announcements (SQLite, or a lost
# change feed), and with them, when a look is only a safety net.
LONG_POLL_STEP = 0.25
ANNOUNCED_LONG_POLL_STEP = 5.0


class WaitSeat:
    """One held long-poll: woken early by a change anywhere, or displaced by a newer wait."""

    __slots__ = ("_displaced", "_woken", "environment")

    def __init__(self, environment: str) -> None:
        self.environment = environment
        self._displaced = False
        self._woken = threading.Event()

    @property
    def displaced(self) -> bool:
        return self._displaced

    def pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, or until woken: then the caller looks again (or leaves)."""
        if self._woken.wait(seconds):
            self._woken.clear()

    def wake(self) -> None:
        self._woken.set()

    def displace(self) -> None:
        self._displaced = True
        self._woken.set()


class WaitRoom:
    """The seats of one worker's long-polls: one per caller, `capacity` in all."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._seats: dict[str, WaitSeat] = {}

    @property
    def waiting(self) -> int:
        """How many long-polls are held right now."""
        return len(self._seats)

    @contextmanager
    def seat(self, caller: str, environment: str) -> Iterator[WaitSeat | None]:
        """Hold a seat for `caller` while the block runs, or yield None when the room is full."""
        taken = self._take(caller, environment)
        try:
            yield taken
        finally:
            if taken is not None:
                self._leave(caller, taken)

    def wake(self, environment: str) -> None:
        """Wake the long-polls of `environment` ("" for all) to read their revision again."""
        with self._lock:
            seats = list(self._seats.values())
        for seat in seats:
            if not environment or seat.environment == environment:
                seat.wake()

    def _take(self, caller: str, environment: str) -> WaitSeat | None:
        with self._lock:
            previous = self._seats.pop(caller, None)
            if previous is not None:
                previous.displace()  # its seat passes to the newer wait: the count is unchanged
            elif len(self._seats) >= self.capacity:
                return None
            seat = self._seats[caller] = WaitSeat(environment)
            return seat

    def _leave(self, caller: str, seat: WaitSeat) -> None:
        with self._lock:
            if self._seats.get(caller) is seat:  # not already handed to a newer wait
                del self._seats[caller]
