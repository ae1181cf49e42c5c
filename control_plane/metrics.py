"""Prometheus metrics at /metrics: requests as they happen, the fleet as the store has it.

Requests are counted and timed by two hooks that cost a few microseconds (the agents' poll is
the hot path). Everything else (agents by state, converged share, reports, policy actions,
webhook deliveries) is read from the store when Prometheus scrapes, so it is the same whichever
worker answers and survives restarts.

Under gunicorn the server calls `enable_multiprocess` before forking its workers: each worker
writes its request counts to files in DATA_DIR/prometheus and a scrape adds them up
(prometheus-client's multiprocess mode). In one process (tests, `flask run`) each app keeps
its own registry.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.clock import utcnow
from common.version import package_version
from control_plane.context import get_store
from control_plane.convergence import STATES
from control_plane.fleet import agent_states, count_states
from control_plane.store import Store

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# From a sub-millisecond 304 poll to a long-poll held for up to a minute.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    15.0,
    60.0,
)
POLICY_ACTIONS = ("promotion", "ready_to_promote", "rollback", "drift_alert")
# Anyone may send any method name; labels take only these, so the series stay few.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STARTED = "tether.metrics.started"

bp = Blueprint("metrics", __name__)


def enable_multiprocess(directory: Path) -> None:
    """Make every process forked from now on share its metrics through files in `directory`."""
    # Files of an earlier run would add their counts to this one's.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROCESS_ENV] = str(directory)
    # prometheus-client chooses how to store values when first imported, which may have been
    # before this call; choose again, before any of our metrics exists.
    values.ValueClass = values.get_value_class()


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: they still count)."""
    if MULTIPROCESS_ENV in os.environ:
        multiprocess.mark_process_dead(pid)


class RequestMetrics:
    """Count and time requests by endpoint, method and status."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        labels = ("endpoint", "method", "status")
        self.requests = Counter(
            "tether_http_requests",
            "HTTP requests answered, by Flask endpoint, method and status.",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "tether_http_request_duration_seconds",
            "Seconds from the request to its response headers, by endpoint, method and status.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Looking a labelled child up costs more than updating it: keep them.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            values = (endpoint, method, str(status))
            children = (self.requests.labels(*values), self.latency.labels(*values))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class FleetCollector:
    """Read the fleet's figures from the store at scrape time."""

    def __init__(self, stale_after: int) -> None:
        self.stale_after = stale_after
        self._lock = threading.Lock()
        # Events are never changed or deleted: count each once, then only the newer ones.
        self._last_event = 0
        self._actions: Tally[str] = Tally()
        self._deliveries: Tally[str] = Tally()

    def describe(self) -> Iterator[Metric]:
        # Registering calls describe(), outside any request: no store access here.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:

        store = get_store()
        agents, share, revision, info, reports, actions, deliveries = self._families()
        now = utcnow()
        for environment in store.environments.list():
            desired = store.environments.desired(environment.name)
            if desired is None:  # deleted between the two reads
                continue
            # Counted from the stored rows, as a fleet status page counts them: a scrape of
            # an environment of 10,000 agents builds no object per agent.
            counts = count_states(
                agent_states(
                    desired, store.agents.facts(environment.name), now, self.stale_after
                ).values()
            )
            for state in STATES:
                agents.add_metric([environment.name, state], getattr(counts, state))
            total = sum(getattr(counts, state) for state in STATES)
            if total:
                share.add_metric([environment.name], counts.converged / total)
            revision.add_metric([environment.name], desired.revision)
        info.add_metric([package_version()], 1)
        reports.add_metric([], store.reports.count())
        self._count_events(store)
        for kind in POLICY_ACTIONS:
            actions.add_metric([kind], self._actions[kind])
        for outcome in ("delivered", "failed"):
            deliveries.add_metric([outcome], self._deliveries[outcome])
        yield from (agents, share, revision, info, reports, actions, deliveries)

    def _count_events(self, store: Store) -> None:
        with self._lock:
            limit = 500
            while True:
                events = store.events.list(limit=limit)  # newest first
                fresh = [event for event in events if event.id > self._last_event]
                if len(fresh) < len(events) or len(events) < limit:
                    break
                limit *= 4
            for event in fresh:
                if event.kind == "webhook_delivery":
                    failed = event.details.get("error") is not None
                    self._deliveries["failed" if failed else "delivered"] += 1
                else:
                    self._actions[event.kind] += 1
            if fresh:
                self._last_event = fresh[0].id

    @staticmethod
    def _families() -> tuple[Any, ...]:
        return (
            GaugeMetricFamily(
                "tether_agents",
                "Enrolled agents by environment and state: converged, lagging, failed, stale.",
                labels=["environment", "state"],
            ),
            GaugeMetricFamily(
                "tether_environment_converged_ratio",
                "Share of an environment's agents serving exactly its desired state.",
                labels=["environment"],
            ),
            GaugeMetricFamily(
                "tether_environment_revision",
                "Revision of an environment's desired state.",
                labels=["environment"],
            ),
            GaugeMetricFamily(
                "tether_build_info", "The running Tether version.", labels=["version"]
            ),
            CounterMetricFamily(
                "tether_reports_received", "Agent reports (drift and shadow windows) stored."
            ),
            CounterMetricFamily(
                "tether_policy_actions",
                "Policy engine actions and alerts, by kind.",
                labels=["kind"],
            ),
            CounterMetricFamily(
                "tether_webhook_deliveries",
                "Webhook deliveries finished, by outcome (delivered, or failed after retries).",
                labels=["outcome"],
            ),
        )


class AppMetrics:
    """One app's metrics: its request metrics, fleet collector and (single process) registry."""

    def __init__(self, stale_after: int) -> None:
        self.multiprocess = MULTIPROCESS_ENV in os.environ
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.requests = RequestMetrics(self.registry)
        self.fleet = FleetCollector(stale_after)
        if self.registry is not None:
            self.registry.register(self.fleet)

    def scrape(self, accept: str) -> tuple[bytes, str]:
        """Return every metric in the format `accept` asks for (Prometheus text by default)."""
        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self.fleet)
        encode, content_type = choose_encoder(accept)
        return encode(registry), content_type


def init_metrics(app: Flask) -> None:
    """Time every request of `app` and serve /metrics."""
    metrics = AppMetrics(app.extensions["tether"].settings.stale_after)
    app.extensions["tether_metrics"] = metrics
    observe = metrics.requests.observe
    clock = time.perf_counter

    @app.before_request
    def start_timer() -> None:
        request.environ[_STARTED] = clock()

    @app.after_request
    def count_request(response: Response) -> Response:
        started = request.environ.get(_STARTED)
        if started is not None:
            rule = request.url_rule
            endpoint = rule.endpoint if rule is not None else "unmatched"
            method = request.method if request.method in METHODS else "other"
            observe(endpoint, method, response.status_code, clock() - started)
        return response

    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics_text() -> Response:
    """Serve the metrics in Prometheus' text exposition format (no token, no secret in it)."""
    metrics: AppMetrics = current_app.extensions["tether_metrics"]
    body, content_type = metrics.scrape(request.headers.get("Accept", ""))
    return Response(body, content_type=content_type)
