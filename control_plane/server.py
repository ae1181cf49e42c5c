"""Serve the app with gunicorn's threaded workers (chosen by measurement: docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from control_plane.app import create_app
from control_plane.logs import gunicorn_logger
from control_plane.metrics import enable_multiprocess, worker_exited
from control_plane.scheduler import PolicyScheduler
from control_plane.settings import ControlPlaneSettings


class ControlPlaneServer(BaseApplication):
    """Gunicorn, configured from our settings rather than its own command line."""

    def __init__(self, settings: ControlPlaneSettings, app_config: dict[str, Any]) -> None:
        self.settings = settings
        self.app_config = app_config
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": f"{s.host}:{s.port}",
            "workers": s.workers,
            "threads": s.threads,
            "worker_class": "gthread",
            # Long-polls hold a thread for up to long_poll_max seconds.
            "timeout": max(60, s.long_poll_max + 30),
            "graceful_timeout": 10,
            "keepalive": 75,
            "loglevel": s.log_level,
            "accesslog": None,
            "errorlog": "-",
            "logger_class": gunicorn_logger(s.log_format),
            "child_exit": _child_exit,
            "preload_app": True,
            "proc_name": "tether-server",
        }
        if "control_socket" in self.cfg.settings:  # gunicorn >= 25.1
            # One control socket per data dir, so several servers on a host never collide.
            options["control_socket"] = str(s.data_dir.resolve() / "gunicorn.ctl")
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):  # type: ignore[no-untyped-def]
        # Before the app makes its metrics and before the fork: workers share them through files.
        enable_multiprocess(self.settings.metrics_dir)
        app = create_app(self.app_config)
        # With preload_app, load() runs once, in the master: so does the policy engine.
        PolicyScheduler(app).start()
        return app


def _child_exit(server: Any, worker: Any) -> None:
    worker_exited(worker.pid)
