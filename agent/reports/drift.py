"""Keep each serving version's live window as a sketch on its reference profile's bins.

`observe` runs on the predict path, so it only appends the request's rows and predictions to the
window's pending list (about a microsecond). The pending rows are folded into the sketch in one
vectorised add, which costs a fraction per row of what counting each request as it comes does:
when `fold_rows` rows are waiting, and when a report is cut. Every row is counted, none dropped.
Comparing the window with the profile happens when a report is cut, outside the lock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from agent.serving.events import PredictionEvent
from common.drift import ReferenceProfile, WindowSketch, compare, sketch
from common.reports import DriftWindow

log = logging.getLogger("tether.agent.drift")
FOLD_ROWS = 1024  # pending rows folded into the sketch at once (memory bound per model)


@dataclass
class _Window:
    version: int
    profile: ReferenceProfile | None
    sketch: WindowSketch | None
    requests: int = 0
    pending_rows: int = 0
    # (rows, predictions) of each request waiting to be counted, kept apart so that one bad
    # request can be skipped alone.
    pending: list[tuple[list[dict[str, Any]], list[Any]]] = field(default_factory=list)


class DriftWindows:
    """One drift window per model: the version serving now, on that version's profile."""

    def __init__(self, fold_rows: int = FOLD_ROWS) -> None:
        self.fold_rows = fold_rows
        self.skipped = 0  # requests the sketch refused (logged), counted in `requests` still
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def serve(self, model: str, version: int, profile: ReferenceProfile | None) -> None:
        """Start measuring `version` of `model` (called after each swap)."""
        with self._lock:
            current = self._windows.get(model)
            if current is not None and current.version == version:
                return
            self._windows[model] = _Window(version, profile, _fresh(profile))

    def observe(self, event: PredictionEvent) -> None:
        """Queue a request's inputs and the primary's outputs for the window (no counting yet)."""
        with self._lock:
            window = self._windows.get(event.model)
            if window is None or window.version != event.version:
                return
            window.requests += len(event.rows)
            if window.sketch is None:
                return
            window.pending.append((event.rows, event.prediction.predictions))
            window.pending_rows += len(event.rows)
            if window.pending_rows >= self.fold_rows:
                self._fold(event.model, window)

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
        # The finished windows are no longer reachable from observe: fold them unlocked.
        for model, window in finished.items():
            self._fold(model, window)
        return {
            model: (window.version, window.requests, _body(window))
            for model, window in finished.items()
        }

    def _fold(self, model: str, window: _Window) -> None:
        """Count the window's pending rows into its sketch in one vectorised add."""
        events, window.pending, window.pending_rows = window.pending, [], 0
        if window.sketch is None or not events:
            return
        rows = [row for event_rows, _ in events for row in event_rows]
        predictions = [value for _, event_predictions in events for value in event_predictions]
        try:
            window.sketch.add(rows, predictions=predictions)
            return
        except (ValueError, TypeError):  # one bad request spoils the batch: count them one by one
            pass
        for event_rows, event_predictions in events:
            try:
                window.sketch.add(event_rows, predictions=event_predictions)
            except (ValueError, TypeError) as error:  # a profile without predictions, say
                self.skipped += 1
                log.debug("drift window of %s skipped a request: %s", model, error)


def _fresh(profile: ReferenceProfile | None) -> WindowSketch | None:
    return None if profile is None else sketch(profile)


def _body(window: _Window) -> DriftWindow:
    # Comparing happens here, off the predict path and outside the lock.
    if window.profile is None or window.sketch is None:
        return DriftWindow(reason=f"version {window.version} has no reference profile")
    return DriftWindow(sketch=window.sketch, report=compare(window.profile, window.sketch))
