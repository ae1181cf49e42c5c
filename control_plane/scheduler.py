"""Run the policy engine and webhook deliveries on a schedule, in one process of the server."""

from __future__ import annotations

import logging

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from control_plane.context import get_store, state
from control_plane.policy_runner import run_policies
from control_plane.webhooks import deliver_due

log = logging.getLogger("tether.scheduler")


class PolicyScheduler:
    """Evaluate policies and deliver webhooks every `policy_interval` seconds."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.interval = state_of(app).settings.policy_interval
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
                store = get_store()
                run_policies(store, state().artifacts)
                deliver_due(store, self.client)
            except Exception:
                log.exception("policy pass failed")

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.client.close()


def state_of(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["tether"]
