"""Run the shadow model on the primary's live inputs, off the hot path, and compare.

The request thread only puts the event on a bounded queue (`put_nowait`): when the queue is full
the item is dropped and counted, so the shadow can never slow the primary down. A worker thread
waits `linger` seconds after the first event so that a batch builds up in the queue, then runs
the whole backlog through the shadow in one call: a model's per-call overhead is paid a few times
a second rather than per request. With `isolation="process"` (the agent's default) the call runs
in a child process (`agent.reports.shadow_child`) with its own GIL and a lower priority, so the
shadow's CPU never stalls the primary's request threads; `"thread"` runs it in the worker thread
itself.
The worker pairs the shadow's answers with the primary's by request id and accumulates the
window's comparison; ground truth from /feedback scores both models on the same requests.

Shadow latency is measured on the first request of each batch, run on its own, so its quantiles
compare with the primary's (one request per call); the rest of the batch is not timed. It is the
CPU time the shadow model spent on that request: the shadow runs at a lower priority, so its wall
time on a busy host would measure the neighbours rather than the model.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from agent.reports.shadow_child import ShadowProcess
from agent.serving.events import Feedback, PredictionEvent
from common.reports import LatencyQuantiles, ShadowMetrics

log = logging.getLogger("tether.agent.shadow")
LATENCY_SAMPLES = 10_000  # per window and model; a reservoir beyond that
REMEMBERED_REQUESTS = 50_000  # for feedback that arrives after the answer
MAX_BATCH = 256  # queued requests run through the shadow in one call
LINGER_SECONDS = 0.2  # how long a batch builds up in the queue after its first request
SHADOW_NICENESS = 10
Isolation = Literal["process", "thread"]
_PREPARE = "prepare"  # queued by prepare(): the worker starts the child process


@dataclass
class ShadowWindow:
    """One window's comparison of one primary/shadow pair."""

    kind: str
    requests: int = 0
    shadowed: int = 0
    dropped: int = 0
    errors: int = 0
    agreed: int = 0
    proba_diff_sum: float = 0.0
    proba_diff_n: int = 0
    # Regressors: running sums, so a long window costs constant memory.
    pairs: int = 0
    abs_diff_sum: float = 0.0
    abs_diff_max: float = 0.0
    sums: list[float] = field(default_factory=lambda: [0.0] * 5)  # x, y, xx, yy, xy
    primary_ms: list[float] = field(default_factory=list)
    shadow_ms: list[float] = field(default_factory=list)
    labelled: int = 0
    primary_correct: int = 0
    shadow_correct: int = 0
    primary_abs_error: float = 0.0
    shadow_abs_error: float = 0.0

    def metrics(self) -> ShadowMetrics:
        """Summarise the window in the report's terms."""
        classifier = self.kind == "classifier"
        regressor_pairs = self.pairs if not classifier else 0
        return ShadowMetrics(
            requests=self.requests,
            shadowed=self.shadowed,
            dropped=self.dropped,
            shadow_errors=self.errors,
            kind="classifier" if classifier else "regressor",
            agreement=(self.agreed / self.shadowed) if classifier and self.shadowed else None,
            agreed=self.agreed if classifier else None,
            mean_abs_proba_diff=(self.proba_diff_sum / self.proba_diff_n)
            if self.proba_diff_n
            else None,
            mean_abs_diff=self.abs_diff_sum / regressor_pairs if regressor_pairs else None,
            max_abs_diff=self.abs_diff_max if regressor_pairs else None,
            correlation=_correlation(regressor_pairs, self.sums) if regressor_pairs else None,
            primary_latency=_quantiles(self.primary_ms),
            shadow_latency=_quantiles(self.shadow_ms),
            labelled=self.labelled,
            primary_correct=self.primary_correct if classifier and self.labelled else None,
            shadow_correct=self.shadow_correct if classifier and self.labelled else None,
            primary_mae=self.primary_abs_error / self.labelled
            if not classifier and self.labelled
            else None,
            shadow_mae=self.shadow_abs_error / self.labelled
            if not classifier and self.labelled
            else None,
        )


WindowKey = tuple[str, int, int]  # model, primary version, shadow version
Answer = tuple[WindowKey, tuple[Any, ...], tuple[Any, ...]]  # window, primary's, shadow's


class ShadowRunner:
    """Queue live inputs for the shadow model and keep per-window comparisons."""

    def __init__(
        self,
        queue_size: int = 1000,
        *,
        isolation: Isolation = "process",
        linger: float = LINGER_SECONDS,
    ) -> None:
        self.isolation = isolation
        self.linger = linger
        self.process = ShadowProcess(SHADOW_NICENESS) if isolation == "process" else None
        self._queue: queue.Queue[PredictionEvent | str | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._windows: dict[WindowKey, ShadowWindow] = {}
        self._warm: set[int] = set()  # ids of the shadow models run at least once (thread mode)
        # Tuples of plain values, which the garbage collector stops tracking: 50,000 remembered
        # answers as lists would make every full collection (a pause on the request threads)
        # walk them all.
        self._answers: OrderedDict[tuple[str, str], Answer] = OrderedDict()
        self._worker = threading.Thread(target=self._work, name="shadow-runner", daemon=True)
        self._worker.start()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def process_crashes(self) -> int:
        """Times the shadow's child process died (its batch counts as shadow errors)."""
        return self.process.crashes if self.process is not None else 0

    @property
    def process_starts(self) -> int:
        """Child processes started: the first one, then one per crash."""
        return self.process.starts if self.process is not None else 0

    def submit(self, event: PredictionEvent) -> None:
        """Hand a prediction to the shadow; never blocks (drops and counts when full)."""
        shadow = event.deployed.shadow
        if shadow is None:
            return
        key = (event.model, event.version, shadow.version)
        rows = len(event.rows)
        with self._lock:
            window = self._window(key, shadow.kind)
            window.requests += rows
            if len(window.primary_ms) < LATENCY_SAMPLES:
                window.primary_ms.append(event.latency_seconds * 1000)
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self._window(key, shadow.kind).dropped += rows

    def feedback(self, items: list[Feedback]) -> int:
        """Score both models on requests with ground truth; return how many were matched."""
        matched = 0
        with self._lock:
            for item in items:
                found = self._answers.get((item.model, item.request_id))
                if found is None:
                    continue
                key, primary, shadow = found
                index = item.index or 0
                if index >= len(primary) or index >= len(shadow):
                    continue
                window = self._windows.get(key)
                if window is None:
                    continue
                window.labelled += 1
                if window.kind == "classifier":
                    window.primary_correct += _same(primary[index], item.label)
                    window.shadow_correct += _same(shadow[index], item.label)
                else:
                    window.primary_abs_error += abs(float(primary[index]) - float(item.label))
                    window.shadow_abs_error += abs(float(shadow[index]) - float(item.label))
                matched += 1
        return matched

    def take(self) -> dict[WindowKey, ShadowMetrics]:
        """Return every window's metrics and start new windows."""
        with self._lock:
            windows, self._windows = self._windows, {}
        return {key: window.metrics() for key, window in windows.items() if window.requests}

    def prepare(self) -> None:
        """Have the worker start the shadow's child process now, ahead of the first batch."""
        # The worker starts it, not a passing thread: Linux kills the child when the thread
        # that started it ends (PR_SET_PDEATHSIG follows the thread).
        if self.process is not None and self.process.pid is None:
            with contextlib.suppress(queue.Full):  # a full queue: the worker is on its way
                self._queue.put_nowait(_PREPARE)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until the queue is drained (for tests and clean shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.005)
        return False

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the worker and the child; a shadow still running in a thread is abandoned."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout / 2)
        self._worker.join(timeout=timeout / 2)
        if self.process is not None:
            self.process.stop(timeout=timeout)

    def _window(self, key: WindowKey, kind: str) -> ShadowWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = ShadowWindow(kind=kind)
        return window

    def _work(self) -> None:
        if self.process is None:
            # Linux schedules threads one by one: the shadow yields the CPU to request threads.
            # (A child inherits its starter's niceness and would then import its libraries at
            # the lowest priority, which takes minutes on a busy host: it lowers its own, after.)
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICENESS)
        while True:
            batch = [self._queue.get()]
            if isinstance(batch[0], PredictionEvent) and self.linger > 0:
                # The backlog waits in the bounded queue, so drops still happen at its bound.
                time.sleep(self.linger)
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if _PREPARE in batch and self.process is not None:
                    self.process.start()
                events = [event for event in batch if isinstance(event, PredictionEvent)]
                for group in _by_shadow(events):
                    self._shadow(group)
            except Exception:  # one bad request must not end the shadow worker
                log.exception("shadow comparison failed")
            finally:
                for _ in batch:
                    self._queue.task_done()
            if any(event is None for event in batch):
                return

    def _shadow(self, events: list[PredictionEvent]) -> None:
        first = events[0]
        shadow = first.deployed.shadow
        assert shadow is not None
        key = (first.model, first.version, shadow.version)
        # The first request alone gives a latency sample comparable with the primary's.
        for part, timed in ((events[:1], True), (events[1:], False)):
            if not part:
                continue
            rows = [row for event in part for row in event.rows]
            try:
                answer, seconds = self._predict(shadow, rows)
            except Exception as error:
                with self._lock:
                    self._window(key, shadow.kind).errors += len(rows)
                log.debug("shadow v%s failed: %s", shadow.version, error)
                continue
            elapsed_ms = seconds * 1000 if timed else None
            self._record(key, shadow.kind, part, answer, elapsed_ms)

    def _predict(self, shadow: Any, rows: list[dict[str, Any]]) -> tuple[Any, float]:
        if self.process is None:
            if id(shadow) not in self._warm:  # a first call is cold: as in the child, untimed
                self._warm.add(id(shadow))
                with contextlib.suppress(Exception):
                    shadow.predict(rows)
            # This thread's CPU time, as the child measures its own (see reports.shadow_child).
            started = time.thread_time()
            answer = shadow.predict(rows)
            return answer, time.thread_time() - started
        return self.process.predict(shadow, rows)

    def _record(
        self,
        key: WindowKey,
        kind: str,
        events: list[PredictionEvent],
        answer: Any,
        elapsed_ms: float | None,
    ) -> None:
        offset = 0
        with self._lock:
            window = self._window(key, kind)
            if elapsed_ms is not None and len(window.shadow_ms) < LATENCY_SAMPLES:
                window.shadow_ms.append(elapsed_ms)
            for event in events:
                count = len(event.rows)
                predictions = answer.predictions[offset : offset + count]
                probabilities = (
                    answer.probabilities[offset : offset + count] if answer.probabilities else None
                )
                offset += count
                self._compare(window, kind, event, predictions, probabilities)
                self._answers[(event.model, event.request_id)] = (
                    key,
                    tuple(event.prediction.predictions),
                    tuple(predictions),
                )
            while len(self._answers) > REMEMBERED_REQUESTS:
                self._answers.popitem(last=False)

    @staticmethod
    def _compare(
        window: ShadowWindow,
        kind: str,
        event: PredictionEvent,
        predictions: list[Any],
        probabilities: list[list[float]] | None,
    ) -> None:
        primary = event.prediction
        window.shadowed += len(event.rows)
        if kind == "classifier":
            window.agreed += sum(
                _same(a, b) for a, b in zip(primary.predictions, predictions, strict=False)
            )
            if primary.probabilities and probabilities:
                for p, s in zip(primary.probabilities, probabilities, strict=False):
                    if len(p) == len(s) and p:
                        # Plain floats: numpy's per-call cost would be most of the work here.
                        diff = sum(abs(a - b) for a, b in zip(p, s, strict=True))
                        window.proba_diff_sum += diff / len(p)
                        window.proba_diff_n += 1
            return
        for p, s in zip(primary.predictions, predictions, strict=False):
            x, y = float(p), float(s)
            window.pairs += 1
            window.abs_diff_sum += abs(x - y)
            window.abs_diff_max = max(window.abs_diff_max, abs(x - y))
            for slot, value in enumerate((x, y, x * x, y * y, x * y)):
                window.sums[slot] += value


def _by_shadow(events: list[PredictionEvent]) -> list[list[PredictionEvent]]:
    """Group queued events by the (model, primary, shadow) they compare, keeping order."""
    groups: dict[tuple[str, int, int], list[PredictionEvent]] = {}
    for event in events:
        shadow = event.deployed.shadow
        if shadow is not None:
            key = (event.model, event.version, id(shadow))
            groups.setdefault(key, []).append(event)
    return list(groups.values())


def _same(a: Any, b: Any) -> bool:
    return str(a) == str(b)


def _quantiles(samples: list[float]) -> LatencyQuantiles:
    if not samples:
        return LatencyQuantiles()
    p50, p95, p99 = np.percentile(np.asarray(samples), [50, 95, 99])
    return LatencyQuantiles(p50=float(p50), p95=float(p95), p99=float(p99))


def _correlation(n: int, sums: list[float]) -> float | None:
    """Pearson's r from running sums (None when either side is constant)."""
    if n < 2:
        return None
    x, y, xx, yy, xy = sums
    var_x, var_y = xx - x * x / n, yy - y * y / n
    if var_x <= 1e-12 * max(1.0, xx) or var_y <= 1e-12 * max(1.0, yy):
        return None
    value = (xy - x * y / n) / math.sqrt(var_x * var_y)
    return None if math.isnan(value) else max(-1.0, min(1.0, value))
