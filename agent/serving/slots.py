"""Hold the models being served, one slot per name, swapped atomically.

A request takes a snapshot with `get()` and uses it to the end, so a swap never changes the
model under a request in flight: it finishes on the model it started with, the next request
gets the new one. The old model is freed once the last request holding it is done.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agent.serving.runtime import LoadedModel


@dataclass(frozen=True)
class Deployed:
    """What serves one model name: the primary, and the shadow candidate beside it if any."""

    primary: LoadedModel
    shadow: LoadedModel | None = None


class ModelSlots:
    """A thread-safe map of model name to what is deployed under it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, Deployed] = {}

    def get(self, name: str) -> Deployed | None:
        """Return a snapshot of what serves `name`, or None."""
        with self._lock:
            return self._slots.get(name)

    def swap(self, name: str, deployed: Deployed) -> Deployed | None:
        """Install `deployed` under `name` and return what it replaced."""
        if not isinstance(deployed, Deployed):
            raise TypeError(f"expected a Deployed, got {type(deployed).__name__}")
        with self._lock:
            old = self._slots.get(name)
            self._slots[name] = deployed
            return old

    def remove(self, name: str) -> Deployed | None:
        """Stop serving `name` and return what served it."""
        with self._lock:
            return self._slots.pop(name, None)

    def names(self) -> list[str]:
        """Return the served model names, sorted."""
        with self._lock:
            return sorted(self._slots)

    def snapshot(self) -> dict[str, Deployed]:
        """Return a copy of every slot at one instant."""
        with self._lock:
            return dict(self._slots)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._slots

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)
