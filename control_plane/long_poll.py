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
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WaitSeat:
    """One held long-poll: woken early when a newer wait from the same caller displaces it."""

    __slots__ = ("_displaced",)

    def __init__(self) -> None:
        self._displaced = threading.Event()

    @property
    def displaced(self) -> bool:
        return self._displaced.is_set()

    def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return True at once if the seat was displaced meanwhile."""
        return self._displaced.wait(seconds)

    def displace(self) -> None:
        self._displaced.set()


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
    def seat(self, caller: str) -> Iterator[WaitSeat | None]:
        """Hold a seat for `caller` while the block runs, or yield None when the room is full."""
        taken = self._take(caller)
        try:
            yield taken
        finally:
            if taken is not None:
                self._leave(caller, taken)

    def _take(self, caller: str) -> WaitSeat | None:
        with self._lock:
            previous = self._seats.pop(caller, None)
            if previous is not None:
                previous.displace()  # its seat passes to the newer wait: the count is unchanged
            elif len(self._seats) >= self.capacity:
                return None
            seat = self._seats[caller] = WaitSeat()
            return seat

    def _leave(self, caller: str, seat: WaitSeat) -> None:
        with self._lock:
            if self._seats.get(caller) is seat:  # not already handed to a newer wait
                del self._seats[caller]
