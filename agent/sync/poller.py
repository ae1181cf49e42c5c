"""Poll the control plane on a schedule, reconcile what changed, and send heartbeats.

The timing policy is a few pure functions (`poll_delay`, `backoff_delay`, `long_poll_delay`);
`Poller.poll_once` is the job, callable directly; `Poller.start` runs it under APScheduler.

- Conditional polls (`If-None-Match`) at the server's hint, or at `poll_interval` without one,
  each shortened by a random share of up to `poll_jitter`, so a fleet never polls in lockstep
  and no agent waits longer than the hint (that bound is what a rollout's speed rests on).
- With `long_poll` set, the server holds the request until the revision changes.
- While the control plane is unreachable or failing (5xx): exponential backoff with full jitter,
  capped at `backoff_max`, reset by the first success. Serving is never affected.
- A heartbeat after every reconcile and at least every `heartbeat_interval`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from agent.local.state import StateStore, heartbeat_of
from agent.local.trust import due_for_refresh, expired
from agent.settings import AgentSettings
from agent.sync.client import ControlPlaneClient, ManifestUpdate, Rejected, Unreachable
from agent.sync.reconciler import ManifestRefused, Outcome, Reconciler
from common.clock import utcnow
from common.schemas import Heartbeat, Manifest

log = logging.getLogger("tether.agent.poller")

# How often the poll job would run if a poll failed to set its own next run (it never should).
SAFETY_INTERVAL = 3600.0


# --- timing policy ------------------------------------------------------------------------


def poll_delay(
    hint: float | None,
    interval: float,
    jitter: float,
    rng: random.Random,
    *,
    follow_hint: bool = True,
) -> float:
    """Return seconds to the next poll: the hint (else the interval) less up to `jitter` of it."""
    base = hint if follow_hint and hint is not None and hint > 0 else interval
    return base * (1.0 - jitter * rng.random())


def backoff_delay(failures: int, initial: float, cap: float, rng: random.Random) -> float:
    """Return the delay after `failures` failures in a row: full jitter under a capped doubling."""
    # Capping the exponent keeps a days-long outage from overflowing the float.
    ceiling = min(cap, initial * 2.0 ** min(max(failures - 1, 0), 64))
    return rng.uniform(0.0, ceiling)


def long_poll_delay(elapsed: float, wait: float, changed: bool, rng: random.Random) -> float | None:
    """Return a short delay if the server held the long-poll or sent news, else None."""
    if changed or elapsed >= wait / 2:
        return rng.uniform(0.0, 0.25)  # the next long-poll can start at once, slightly spread
    return None  # answered at once without news: the server does not long-poll, so pace it


# --- the jobs -----------------------------------------------------------------------------


class Poller:
    """Poll, reconcile and report for one agent."""

    def __init__(
        self,
        *,
        client: ControlPlaneClient,
        reconciler: Reconciler,
        state: StateStore,
        settings: AgentSettings,
        hostname: str | None = None,
        labels: dict[str, str] | None = None,
        rng: random.Random | None = None,
        on_poll: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        # Told each poll's outcome (agent.metrics.POLL_OUTCOMES), for /metrics.
        self.on_poll = on_poll
        self._counted = False
        self.reconciler = reconciler
        self.state = state
        self.settings = settings
        self.hostname = hostname or socket.gethostname()
        # Labels given at enrollment, overridden key by key by those in the settings.
        self.labels = {**(labels or {}), **settings.labels}
        self.rng = rng or random.Random()
        self.failures = 0
        self._last_heartbeat = -float("inf")
        self._scheduler: BackgroundScheduler | None = None
        self._executor = DaemonThreadExecutor()
        self._stopping = threading.Event()

    def poll_once(self) -> float:
        """Poll once, reconcile if needed, heartbeat; return the seconds until the next poll."""
        settings = self.settings
        self._counted = False
        known = self.state.load()
        # Half-way to its expiry, ask for a freshly signed manifest rather than a 304: the
        # revision may stand for weeks, and the fresh one also carries rotated keys.
        fresh = known.manifest is not None and not due_for_refresh(known.manifest, utcnow())
        etag = known.manifest_etag if fresh else None
        started = time.monotonic()
        try:
            answer = self.client.fetch_manifest(etag, wait=settings.long_poll)
        except Unreachable as error:
            self.failures += 1
            delay = backoff_delay(
                self.failures, settings.backoff_initial, settings.backoff_max, self.rng
            )
            log.warning(
                "control plane unreachable (%d in a row), retry in %.1f s: %s",
                self.failures,
                delay,
                error,
            )
            self._note(attempt=True, error=str(error), reachable=False)
            self._outcome("unreachable")
            return delay
        except Rejected as error:
            # Reachable, but it refuses us (revoked token, environment deleted): not a reason to
            # back off harder, nor to stop serving. Keep asking at the normal pace.
            self.failures = 0
            log.error("control plane refused the poll: %s", error)
            self._note(attempt=True, error=str(error), reachable=True)
            self._outcome("rejected")
            return poll_delay(None, settings.poll_interval, settings.poll_jitter, self.rng)
        self.failures = 0
        self._note(attempt=True, success=True)

        manifest: Manifest | None = known.manifest
        changed = isinstance(answer, ManifestUpdate)
        if not changed and manifest is not None and expired(manifest, utcnow(), 0):
            # Nothing newer comes (a frozen control plane, or a 304 from someone else): keep
            # serving what was applied, and say so.
            log.warning("the manifest in hand expired at %s", manifest.expires_at.isoformat())
            self._note(
                error=f"manifest revision {manifest.revision} expired at "
                f"{manifest.expires_at.isoformat()} and no fresh one came"
            )
        with self.reconciler.lock:
            # A bundle handed to this agent (agent.airgap.inbox) may have been applied meanwhile:
            # converge on what is accepted now, never on the copy read before the request.
            manifest = self.state.load().manifest
            if isinstance(answer, ManifestUpdate):
                try:
                    manifest = self.reconciler.accept(answer.signed, answer.etag)
                    log.info("manifest revision %d accepted", manifest.revision)
                except ManifestRefused as error:
                    log.error("manifest refused: %s", error)
                    self._note(error=f"manifest refused: {error}")
                    changed = False
                    self._outcome("refused")
                else:
                    self._outcome("changed")
            else:
                self._outcome("not_modified")
            outcome: Outcome | None = None
            if manifest is not None and (changed or self.reconciler.pending(manifest)):
                outcome = self.reconciler.reconcile(manifest)
                if outcome.failed:
                    self._note(error="; ".join(f"{k}: {v}" for k, v in outcome.failed.items()))
        heartbeat_due = time.monotonic() - self._last_heartbeat >= settings.heartbeat_interval
        if outcome is not None or heartbeat_due:
            self.heartbeat()

        if settings.long_poll > 0:
            quick = long_poll_delay(
                time.monotonic() - started, settings.long_poll, changed, self.rng
            )
            if quick is not None:
                return quick
        return poll_delay(
            answer.poll_after,
            settings.poll_interval,
            settings.poll_jitter,
            self.rng,
            follow_hint=settings.follow_poll_hint,
        )

    def build_heartbeat(self) -> Heartbeat:
        """Describe this agent's actual state for the control plane."""
        return heartbeat_of(self.state.load(), self.hostname, self.labels)

    def heartbeat(self) -> bool:
        """Send a heartbeat now; return whether the control plane took it."""
        self._last_heartbeat = time.monotonic()
        try:
            self.client.heartbeat(self.build_heartbeat())
        except (Unreachable, Rejected) as error:
            log.warning("heartbeat failed: %s", error)
            self._note(error=f"heartbeat: {error}", reachable=isinstance(error, Rejected))
            return False
        with self.state.edit(durable=False) as state:
            state.last_heartbeat = utcnow()
            state.reachable = True
        return True

    def _outcome(self, outcome: str) -> None:
        self._counted = True
        if self.on_poll is not None:
            self.on_poll(outcome)

    def _note(
        self,
        *,
        attempt: bool = False,
        success: bool = False,
        error: str | None = None,
        reachable: bool | None = None,
    ) -> None:
        # Bookkeeping for `tether agent status`: losing it in a crash costs nothing.
        with self.state.edit(durable=False) as state:
            now = utcnow()
            if attempt:
                state.last_poll_attempt = now
            if success:
                state.last_successful_poll = now
                state.reachable = True
            if error is not None:
                state.last_error = error[:2000]
                state.last_error_at = now
            if reachable is not None:
                state.reachable = reachable

    # --- scheduling -----------------------------------------------------------------------

    def start(self) -> None:
        """Run the poll and heartbeat jobs on a background scheduler, starting now."""
        scheduler = BackgroundScheduler(
            executors={"default": self._executor},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._scheduler = scheduler
        scheduler.start()
        # The poll is an interval job whose next run each poll sets itself, once it knows the
        # delay (the interval is only a safety net). APScheduler updates a job under the same
        # lock as it submits it, so that change always lands after its own; and unlike a
        # one-shot job, an interval job is never removed, which races shutdown in APScheduler 3.
        scheduler.add_job(
            self._poll_job,
            "interval",
            seconds=SAFETY_INTERVAL,
            id="poll",
            name="poll",
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            self._heartbeat_job,
            "interval",
            seconds=self.settings.heartbeat_interval,
            id="heartbeat",
            name="heartbeat",
            next_run_time=datetime.now(UTC),
        )

    def stop(self, timeout: float = 0.0) -> bool:
        """Stop scheduling and wait up to `timeout` for a job in flight; return whether none is.

        A job still running then (a long-poll, a download being cancelled) is abandoned: its
        thread is a daemon, and everything it writes is written atomically.
        """
        self._stopping.set()
        scheduler = self._scheduler
        if scheduler is None:
            return True
        if scheduler.running:
            scheduler.shutdown(wait=False)
        return self._executor.join(timeout)

    def _schedule_poll(self, delay: float) -> None:
        if self._stopping.is_set() or self._scheduler is None:
            return
        # Stopping meanwhile removes the job or the scheduler: nothing left to reschedule.
        with contextlib.suppress(JobLookupError, SchedulerNotRunningError):
            self._scheduler.modify_job(
                "poll", next_run_time=datetime.now(UTC) + timedelta(seconds=delay)
            )

    def _poll_job(self) -> None:
        delay = self.settings.poll_interval
        try:
            delay = self.poll_once()
        except Exception:
            log.exception("poll failed unexpectedly")
            if not self._counted:  # a poll that failed after its answer counts once
                self._outcome("error")
            self.failures += 1
            delay = backoff_delay(
                self.failures, self.settings.backoff_initial, self.settings.backoff_max, self.rng
            )
        finally:
            self._schedule_poll(delay)

    def _heartbeat_job(self) -> None:
        if time.monotonic() - self._last_heartbeat >= self.settings.heartbeat_interval / 2:
            self.heartbeat()


class DaemonThreadExecutor(BaseExecutor):
    """Run each job on its own daemon thread: a request stuck on the network never blocks exit."""

    def __init__(self) -> None:
        super().__init__()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def _do_submit_job(self, job, run_times):  # type: ignore[no-untyped-def]
        def target() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as error:
                self._run_job_error(job.id, error, error.__traceback__)
            else:
                self._run_job_success(job.id, events)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=target, name=f"tether-{job.name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def shutdown(self, wait: bool = True) -> None:
        if wait:
            self.join(None)

    def join(self, timeout: float | None) -> bool:
        """Wait for running jobs up to `timeout` seconds; return whether all finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(thread.is_alive() for thread in threads)
