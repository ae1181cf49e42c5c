"""Helpers for the reporting tests: prediction events, and shadows the child process can load."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from agent.serving.events import PredictionEvent
from agent.serving.slots import Deployed


def event(deployed: Deployed, rows: list[dict], request_id: str) -> PredictionEvent:
    """Return the event the inference server hands to its hook after the primary's answer."""
    prediction = deployed.primary.predict(rows)
    return PredictionEvent(
        model="wine",
        version=deployed.primary.version,
        request_id=request_id,
        rows=rows,
        prediction=prediction,
        latency_seconds=0.001,
        deployed=deployed,
    )


def rows_of(frame, start: int, stop: int) -> list[dict]:
    return frame.iloc[start:stop].to_dict(orient="records")


class _Shadow:
    """A stand-in shadow model that pickles by reference, so the child process can load it."""

    kind = "classifier"
    name = "wine"
    sha256 = None

    def __init__(self, version: int) -> None:
        self.version = version


class ExitingShadow(_Shadow):
    """Kill the process it runs in, as a segfaulting native library would."""

    def predict(self, rows):
        os._exit(3)


class FailingShadow(_Shadow):
    """Raise on every batch."""

    def predict(self, rows):
        raise RuntimeError("shadow broke")


class GatedShadow(_Shadow):
    """Block until a file exists, then raise: it fills the queue for as long as a test wants."""

    def __init__(self, version: int, gate: Path) -> None:
        super().__init__(version)
        self.gate = gate

    def predict(self, rows):
        deadline = time.monotonic() + 30
        while not self.gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("shadow broke")


class WaitingShadow(_Shadow):
    """Answer like a real shadow after 50 ms of waiting without using a CPU."""

    def __init__(self, version: int, real: Any) -> None:
        super().__init__(version)
        self.real = real

    def predict(self, rows):
        time.sleep(0.05)
        return self.real.predict(rows)


class ColdStartShadow(_Shadow):
    """Burn 100 ms of CPU on its first call in a process, as lazy imports and caches do."""

    def __init__(self, version: int, real: Any) -> None:
        super().__init__(version)
        self.real = real
        self.warm = False  # a child gets its own copy, cold

    def predict(self, rows):
        if not self.warm:
            self.warm = True
            busy_until = time.thread_time() + 0.1
            while time.thread_time() < busy_until:
                pass
        return self.real.predict(rows)
