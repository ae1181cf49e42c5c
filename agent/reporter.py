"""Cut drift and shadow windows into reports, keep them in the outbox, send them when possible."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from agent.drift_window import DriftWindows
from agent.outbox import Outbox
from agent.shadow import ShadowRunner
from common.reports import Report, ReportAck

log = logging.getLogger("tether.agent.reports")
BATCH = 100


class Reporter:
    """Turn the live windows into reports every report interval."""

    def __init__(self, shadow: ShadowRunner, drift: DriftWindows, outbox: Outbox) -> None:
        self.shadow = shadow
        self.drift = drift
        self.outbox = outbox
        self.window_start = datetime.now(UTC)
        # Rows the shadow dropped, per model, over every window cut so far (for /metrics).
        self.shadow_dropped: dict[str, int] = {}

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
        if reports:
            self.outbox.put(reports)
        return reports

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
