"""Keep each serving version's live window as a sketch on its reference profile's bins.

`observe` runs on the predict path, so it only counts the rows into the sketch; comparing the
window with the profile happens when a report is cut.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from agent.inference_server import PredictionEvent
from common.drift import ReferenceProfile, WindowSketch, compare, sketch
from common.reports import DriftWindow

log = logging.getLogger("tether.agent.drift")


@dataclass
class _Window:
    version: int
    profile: ReferenceProfile | None
    sketch: WindowSketch | None
    requests: int = 0


class DriftWindows:
    """One drift window per model: the version serving now, on that version's profile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def serve(self, model: str, version: int, profile: ReferenceProfile | None) -> None:
        """Start measuring `version` of `model` (called after each swap)."""
        with self._lock:
            current = self._windows.get(model)
            if current is not None and current.version == version:
                return
            self._windows[model] = _Window(version, profile, _fresh(profile))

    def forget(self, model: str) -> None:
        with self._lock:
            self._windows.pop(model, None)

    def observe(self, event: PredictionEvent) -> None:
        """Count a request's inputs and the primary's outputs into the window."""
        with self._lock:
            window = self._windows.get(event.model)
            if window is None or window.version != event.version:
                return
            window.requests += len(event.rows)
            if window.sketch is None:
                return
            try:
                window.sketch.add(event.rows, predictions=event.prediction.predictions)
            except (ValueError, TypeError) as error:  # a profile without predictions, say
                log.debug("drift window of %s skipped a request: %s", event.model, error)

    def take(self) -> dict[str, tuple[int, int, DriftWindow]]:
        """Return each model's (version, requests, window body) and start new windows."""
        finished: dict[str, _Window] = {}
        with self._lock:
            for model, window in self._windows.items():
                if window.requests:
                    finished[model] = window
                    self._windows[model] = _Window(
                        window.version, window.profile, _fresh(window.profile)
                    )
        return {
            model: (window.version, window.requests, _body(window))
            for model, window in finished.items()
        }


def _fresh(profile: ReferenceProfile | None) -> WindowSketch | None:
    return None if profile is None else sketch(profile)


def _body(window: _Window) -> DriftWindow:
    # Comparing happens here, off the predict path and outside the lock.
    if window.profile is None or window.sketch is None:
        return DriftWindow(reason=f"version {window.version} has no reference profile")
    return DriftWindow(sketch=window.sketch, report=compare(window.profile, window.sketch))
