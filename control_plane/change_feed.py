"""Hear desired-state changes made by any replica, so held long-polls answer within a second.

On PostgreSQL a change announces itself (`pg_notify` in the transaction that bumps the
revision, control_plane/store/environments.py); one thread per process keeps a plain
connection that LISTENs and wakes this process's held long-polls, which then read their
revision again. While that connection is down the long-polls look for themselves every
quarter second, as on SQLite, so a lost feed makes answers slower, never wrong.

LISTEN needs a session of its own: a pooler in transaction mode (PgBouncer's default) does not
carry it, so `database_listen_url` can name the server directly (docs/scale-out.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger("tether.change_feed")

RECONNECT_AFTER_S = 1.0
RECONNECT_AFTER_MAX_S = 15.0
# How long one wait for notifications lasts, so `stop` is seen and the session is checked.
LISTEN_SLICE_S = 5.0
EVERY_ENVIRONMENT = ""  # a payload that wakes every wait


class ChangeFeed:
    """A thread that LISTENs on one channel and calls `on_change` for every notification."""

    def __init__(self, url: str, channel: str, on_change: Callable[[str], None]) -> None:
        self.url = url
        self.channel = channel
        self.on_change = on_change
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def listening(self) -> bool:
        """Whether notifications are arriving now: if not, callers look for changes themselves."""
        return self._listening.is_set() and self._pid == os.getpid()

    def ensure_running(self) -> None:
        """Start the thread in this process, once (a forked worker starts its own)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._listening = threading.Event()
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name="tether-change-feed", daemon=True
            )
            self._pid = os.getpid()
            self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=LISTEN_SLICE_S + 1)

    def _run(self) -> None:
        import psycopg

        backoff = RECONNECT_AFTER_S
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self._listening.set()
                    backoff = RECONNECT_AFTER_S
                    log.debug("listening for changes on %s", self.channel)
                    # Anything missed while the feed was down is found by the caller's
                    # fallback checks; announce one wake-up so no wait sits out its step.
                    self.on_change(EVERY_ENVIRONMENT)
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=LISTEN_SLICE_S):
                            self.on_change(notice.payload)
                        conn.execute("SELECT 1")  # a dead session raises here, not silently
            except psycopg.Error as error:
                if self._listening.is_set():
                    log.warning("change feed lost (%s); polling until it is back", error)
                self._listening.clear()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_AFTER_MAX_S)
            except Exception:  # never let the thread die: long-polls would only poll
                log.exception("change feed failed")
                self._listening.clear()
                time.sleep(backoff)
        self._listening.clear()
