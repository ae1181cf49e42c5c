"""Hang shadow runs and drift windows off the predict path, and report them every window.

The predict path only calls `on_prediction` (queueing the rows for the drift window, then a
non-blocking hand-off to the shadow queue). A background thread cuts the windows into reports
every `report_interval` seconds (or sooner after `report_max_requests` requests), keeps them in
the outbox, and sends what the outbox holds whenever the control plane answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.local.cache import ArtifactCache
from agent.local.outbox import Outbox
from agent.local.state import StateStore
from agent.reports.drift import DriftWindows
from agent.reports.reporter import Reporter
from agent.reports.shadow import ShadowRunner
from agent.serving.events import Feedback, PredictionEvent
from agent.serving.slots import Deployed
from common.drift import ReferenceProfile
from common.reports import Report, ReportAck

log = logging.getLogger("tether.agent.reporting")
FINAL_FLUSH_SECONDS = 2.0


class ReportingLoop:
    """The agent's shadow runner, drift windows, outbox and report schedule."""

    def __init__(
        self,
        *,
        state: StateStore,
        cache: ArtifactCache,
        outbox: Outbox,
        profile_opener: Callable[[str, int, int], Any],
        send: Callable[[list[Report]], ReportAck] | None,
        interval: float,
        max_requests: int,
        queue_size: int,
    ) -> None:
        self.state = state
        self.cache = cache
        self.profile_opener = profile_opener
        self.send = send  # None: offline, reports wait for `tether agent export-reports`
        self.interval = interval
        self.max_requests = max_requests
        self.shadow = ShadowRunner(queue_size=queue_size)
        self.drift = DriftWindows()
        self.outbox = outbox
        self.reporter = Reporter(self.shadow, self.drift, outbox)
        self._requests = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reporting", daemon=True)

    def on_prediction(self, event: PredictionEvent) -> None:
        """Queue the request for the drift window and hand it to the shadow (never blocks)."""
        self.drift.observe(event)
        self.shadow.submit(event)
        self._requests += len(event.rows)
        if self._requests >= self.max_requests:
            self._wake.set()

    def on_feedback(self, items: list[Feedback]) -> None:
        self.shadow.feedback(items)

    def on_swap(self, name: str, deployed: Deployed) -> None:
        """Point the model's drift window at the new primary and its reference profile."""
        version = deployed.primary.version
        self.drift.serve(name, version, self._profile(name, version))
        if deployed.shadow is not None:
            self.shadow.prepare()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = FINAL_FLUSH_SECONDS) -> None:
        """Cut the last window into the outbox and try one last send, within `timeout`."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        self.shadow.stop()

    def cut_and_send(self) -> int:
        """Cut the current windows, then send the outbox; return reports acknowledged."""
        self._requests = 0
        self.reporter.cut()
        if self.send is None:
            return 0
        try:
            return self.reporter.flush(self.send)
        except Exception as error:  # the control plane is away: the outbox keeps them
            log.info("reports stay in the outbox (%d): %s", self.outbox.depth(), error)
            return 0

    def _run(self) -> None:
        deadline = time.monotonic() + self.interval
        while not self._stopping.is_set():
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                break
            if time.monotonic() >= deadline or self._requests >= self.max_requests:
                try:
                    self.cut_and_send()
                except Exception:  # the loop must outlive any one window: it is the only one
                    log.exception("reporting failed; the next window tries again")
                deadline = time.monotonic() + self.interval
        self.shadow.wait_idle(timeout=FINAL_FLUSH_SECONDS / 4)
        self.cut_and_send()

    def _profile(self, name: str, version: int) -> ReferenceProfile | None:
        manifest = self.state.load().manifest
        model = manifest.models.get(name) if manifest else None
        entry = None
        if model is not None and model.primary.version == version:
            entry = model.primary
        if entry is None or entry.reference_profile is None:
            return None
        ref = entry.reference_profile
        try:
            path = self.cache.get(
                ref.sha256, ref.size, lambda offset: self.profile_opener(name, version, offset)
            )
            return ReferenceProfile.model_validate_json(path.read_bytes())
        except Exception as error:  # drift is then reported as unavailable, serving goes on
            log.warning("no reference profile for %s v%d: %s", name, version, error)
            return None
