"""Run the policy engine and webhook deliveries on a schedule, in one process of the fleet.

Each server's master process runs the schedule; a pass does work only where this process
leads (control_plane/leadership.py): the one server on SQLite, one replica on PostgreSQL.
"""

from __future__ import annotations

import logging

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from control_plane.context import get_store, state
from control_plane.leadership import Leadership, leadership_for
from control_plane.policy_runner import run_policies
from control_plane.webhooks import deliver_due

log = logging.getLogger("tether.scheduler")


class PolicyScheduler:
    """Evaluate policies and deliver webhooks every `policy_interval` seconds."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        settings = state_of(app).settings
        self.interval = settings.policy_interval
        self.leadership: Leadership = leadership_for(settings.listen_url, settings.replicated)
        self.client = httpx.Client(timeout=5.0)
        self.scheduler = BackgroundScheduler(daemon=True)

    def start(self) -> None:
        if self.interval <= 0:
            return
        self.scheduler.add_job(
            self.run_once,
            "interval",
            seconds=self.interval,
            max_instances=1,
            coalesce=True,
            id="policies",
        )
        self.scheduler.start()

    def run_once(self) -> None:
        """Run one pass; a failure is logged and the next pass tries again."""
        with self.app.app_context():
            try:
                if not self.leadership.leads():
                    return
                store = get_store()
                run_policies(store, state().artifacts)
                deliver_due(store, self.client)
            except Exception:
                log.exception("policy pass failed")

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.leadership.release()
        self.client.close()


def state_of(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["tether"]
