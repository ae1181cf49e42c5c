"""Cut drift and shadow windows into reports, keep them in the outbox, send them when possible."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from agent.local.outbox import Outbox
from agent.reports.drift import DriftWindows
from agent.reports.shadow import ShadowRunner
from common.reports import Report, ReportAck

log = logging.getLogger("tether.agent.reports")
BATCH = 100
# Reports the outbox could not take (disk full) wait in memory for the next cut, up to this many.
MAX_UNSAVED = 1000


class Reporter:
    """Turn the live windows into reports every report interval."""

    def __init__(self, shadow: ShadowRunner, drift: DriftWindows, outbox: Outbox) -> None:
        self.shadow = shadow
        self.drift = drift
        self.outbox = outbox
        self.window_start = datetime.now(UTC)
        # Rows the shadow dropped, per model, over every window cut so far (for /metrics).
        self.shadow_dropped: dict[str, int] = {}
        self.unsaved: list[Report] = []

    def cut(self, now: datetime | None = None) -> list[Report]:
        """Close the current windows into reports, stored durably in the outbox."""
        now = now or datetime.now(UTC)
        start, self.window_start = self.window_start, now
        reports = [
            Report(
                id=uuid.uuid4().hex,
                kind="drift",
                model=model,
                version=version,
                window_start=start,
                window_end=now,
                requests=requests,
                drift=body,
            )
            for model, (version, requests, body) in sorted(self.drift.take().items())
        ]
        shadowed = sorted(self.shadow.take().items())
        for (model, _, _), metrics in shadowed:
            self.shadow_dropped[model] = self.shadow_dropped.get(model, 0) + metrics.dropped
        reports += [
            Report(
                id=uuid.uuid4().hex,
                kind="shadow",
                model=model,
                version=version,
                shadow_version=shadow_version,
                window_start=start,
                window_end=now,
                requests=metrics.requests,
                shadow=metrics,
            )
            for (model, version, shadow_version), metrics in shadowed
        ]
        self._save(reports)
        return reports

    def _save(self, reports: list[Report]) -> None:
        """Store reports, with any an earlier cut could not store; keep them if this fails too."""
        waiting = self.unsaved + reports
        if not waiting:
            return
        try:
            self.outbox.put(waiting)
        except (sqlite3.Error, OSError) as error:
            self.unsaved = waiting[-MAX_UNSAVED:]
            lost = len(waiting) - len(self.unsaved)
            log.error(
                "the outbox cannot store %d report(s) (%s): kept in memory for the next window%s",
                len(waiting),
                error,
                f"; the {lost} oldest are lost" if lost else "",
            )
            return
        self.unsaved = []

    def flush(self, send: Callable[[list[Report]], ReportAck], limit: int = 10_000) -> int:
        """Send waiting reports in batches; drop each one only once it is acknowledged."""
        acknowledged = 0
        while acknowledged < limit:
            batch = self.outbox.pending(BATCH)
            if not batch:
                break
            ack = send(batch)
            done = self.outbox.acknowledge([*ack.stored, *ack.duplicates])
            acknowledged += done
            if done == 0:  # the control plane acknowledged none of them: try again later
                log.warning("no report of a batch of %d was acknowledged", len(batch))
                break
        return acknowledged
