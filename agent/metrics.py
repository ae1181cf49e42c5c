"""The agent's Prometheus metrics, served at /metrics by its local inference server.

What happens on the agent's own paths is counted as it happens, each with a few cheap
operations: predictions and their latency (a hook after the model answered), polls by outcome,
bytes downloaded. What other parts already keep is read when Prometheus scrapes (`StateCollector`):
the shadow queue's depth and drops, and the outbox's depth. Each agent has its own
`CollectorRegistry`, so agents sharing a process (tests, embedding hosts) never mix their figures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.local.outbox import Outbox
from agent.serving.events import PredictionEvent

log = logging.getLogger("tether.agent.metrics")

# 1, 2.5 and 5 per decade from 0.1 ms (a small linear model) to 10 s (a slow ensemble's batch).
PREDICT_BUCKETS = (*(round(m * 10.0**e, 6) for e in range(-4, 1) for m in (1, 2.5, 5)), 10.0)
# Every outcome a poll can have (agent.sync.poller), exported from the start so rates work at once.
POLL_OUTCOMES = ("changed", "not_modified", "refused", "rejected", "unreachable", "error")
DOWNLOAD_PARTS = ("artifact", "profile")

PredictionHook = Callable[[PredictionEvent], None]


class AgentMetrics:
    """One agent's registry: its counters, histogram and the collector of its live state."""

    def __init__(self, *, outbox: Outbox | None = None) -> None:
        self.registry = CollectorRegistry()
        by_version = ("model", "version")
        self.predictions = Counter(
            "tether_agent_predictions",
            "Prediction requests answered by the primary model, by model and version.",
            by_version,
            registry=self.registry,
        )
        self.rows = Counter(
            "tether_agent_predicted_rows",
            "Rows predicted by the primary model (a request may carry a batch).",
            by_version,
            registry=self.registry,
        )
        self.latency = Histogram(
            "tether_agent_prediction_duration_seconds",
            "Seconds the primary model took to predict one request, by model and version.",
            by_version,
            buckets=PREDICT_BUCKETS,
            registry=self.registry,
        )
        self.polls = Counter(
            "tether_agent_polls",
            "Polls of the control plane for the manifest, by outcome.",
            ("outcome",),
            registry=self.registry,
        )
        self.download_bytes = Counter(
            "tether_agent_download_bytes",
            "Bytes received from the control plane for artifacts and reference profiles.",
            ("part",),
            registry=self.registry,
        )
        self._polls = {outcome: self.polls.labels(outcome) for outcome in POLL_OUTCOMES}
        self._downloads = {part: self.download_bytes.labels(part) for part in DOWNLOAD_PARTS}
        # Looking a labelled child up costs more than updating it: keep them per model version.
        self._children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self.state = StateCollector(outbox)
        self.registry.register(self.state)

    def watch_reporting(self, reporting: Any) -> None:
        """Read the shadow queue's figures from `reporting` (agent.reports.loop) at each scrape."""
        self.state.reporting = reporting

    def on_prediction(self, then: PredictionHook | None = None) -> PredictionHook:
        """Return a prediction hook that counts the request, then calls `then`."""
        children = self._children
        labelled = self._labelled

        def count(event: PredictionEvent) -> None:
            found = children.get((event.model, event.version))
            if found is None:
                found = labelled(event.model, event.version)
            found[0].inc()
            found[1].inc(len(event.rows))
            found[2].observe(event.latency_seconds)
            if then is not None:
                then(event)

        return count

    def count_poll(self, outcome: str) -> None:
        """Count one poll; `outcome` is one of POLL_OUTCOMES."""
        self._polls[outcome].inc()

    def count_downloads(
        self, opener: Callable[..., AbstractContextManager[Any]], part: str = "artifact"
    ) -> Callable[..., AbstractContextManager[Any]]:
        """Wrap a download opener so every byte its streams deliver is counted under `part`."""
        add = self._downloads[part].inc

        @contextmanager
        def counted(*args: Any, **kwargs: Any) -> Iterator[CountedStream]:
            with opener(*args, **kwargs) as stream:
                yield CountedStream(stream, add)

        return counted

    def scrape(self, accept: str = "") -> tuple[bytes, str]:
        """Return every metric in the format `accept` asks for (Prometheus text by default)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def _labelled(self, model: str, version: int) -> tuple[Any, Any, Any]:
        values = (model, str(version))
        found = (
            self.predictions.labels(*values),
            self.rows.labels(*values),
            self.latency.labels(*values),
        )
        self._children[(model, version)] = found
        return found


class CountedStream:
    """A download stream (agent.local.cache.Stream) that reports each chunk's size as it passes."""

    def __init__(self, stream: Any, add: Callable[[int], None]) -> None:
        self._stream = stream
        self._add = add

    @property
    def offset(self) -> int:
        return int(self._stream.offset)

    @property
    def readinto(self) -> Callable[[memoryview], int] | None:
        reader = self._stream.readinto
        if reader is None:
            return None
        add = self._add

        def counted(buffer: memoryview) -> int:
            count = int(reader(buffer))
            if count:
                add(count)
            return count

        return counted

    def chunks(self) -> Iterator[bytes]:
        add = self._add
        for chunk in self._stream.chunks():
            add(len(chunk))
            yield chunk


class StateCollector:
    """Read the shadow queue and the outbox when Prometheus scrapes, not on the predict path.

    `reporting` (agent.reports.loop.ReportingLoop) is read by attribute name only, so another
    shadow runner (one in a child process, say) fits if it offers the same two figures:
    `reporting.shadow.queue_depth` (int) and `reporting.reporter.shadow_dropped` (rows per
    model). A figure whose attribute is missing is left out, with one warning, rather than
    failing the whole scrape.
    """

    def __init__(self, outbox: Outbox | None, reporting: Any = None) -> None:
        self.outbox = outbox
        self.reporting = reporting
        self._warned: set[str] = set()

    def describe(self) -> Iterator[Metric]:
        # Registering calls describe(): name the families without reading any state.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        depth, dropped, outbox = self._families()
        queued = self._read("shadow", "queue_depth")
        if queued is not None:
            depth.add_metric([], float(queued))
            yield depth
        totals = self._read("reporter", "shadow_dropped")
        if totals is not None:
            for model, count in sorted(dict(totals).items()):
                dropped.add_metric([model], float(count))
            yield dropped
        if self.outbox is not None:
            outbox.add_metric([], float(self.outbox.depth()))
            yield outbox

    def _read(self, *path: str) -> Any:
        """Return `reporting.<path>`, or None (warning once) if the attribute is gone."""
        found = self.reporting
        if found is None:
            return None
        try:
            for name in path:
                found = getattr(found, name)
        except AttributeError as error:
            where = ".".join(path)
            if where not in self._warned:  # once: a scrape every 15 s would flood the log
                self._warned.add(where)
                log.warning("/metrics leaves out reporting.%s: %s", where, error)
            return None
        return found

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "tether_agent_shadow_queue_depth",
                "Requests waiting for the shadow model.",
            ),
            CounterMetricFamily(
                "tether_agent_shadow_dropped_rows",
                "Rows not run through the shadow because its queue was full, by model; "
                "counted when each report window is cut.",
                labels=["model"],
            ),
            GaugeMetricFamily(
                "tether_agent_outbox_depth",
                "Reports in the outbox waiting for the control plane's acknowledgement.",
            ),
        )
