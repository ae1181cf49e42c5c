"""Choose the one process that runs the work that must happen once: policies and webhooks.

Every replica's server runs a scheduler, and each pass first asks whether this process leads.
On PostgreSQL the leader is whoever holds a session-level advisory lock on a connection kept
for that alone: the lock is the server's, so it is free the moment the leader's session ends
(a killed replica's socket closes; a vanished host is found by TCP keepalives within about
`DEAD_PEER_S`), and another replica takes it at its next pass. On SQLite there is one server,
which always leads.

A pass also checks, before acting, that the lock is still held; decisions are written with
dedupe keys (control_plane/store/events.py), so even a leader cut off mid-pass cannot make a
promotion or an alert twice.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Protocol

log = logging.getLogger("tether.leadership")

# pg_try_advisory_lock's key for "leads the policy engine": any fixed 64-bit number, other than
# the write lock's (control_plane/store/postgres.py).
LEADER_LOCK = 0x7E7E_0002
# The server gives up on a silent leader after idle + interval * count seconds.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 5, 2, 3
DEAD_PEER_S = KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT


class Leadership(Protocol):
    def leads(self) -> bool:
        """Whether this process leads now: take the lead if it is free."""
        ...

    def release(self) -> None: ...


class SoleServer:
    """The embedded default: one server on one SQLite file always leads."""

    def leads(self) -> bool:
        return True

    def release(self) -> None:
        pass


class AdvisoryLockLeadership:
    """Lead while holding a PostgreSQL advisory lock on a connection of our own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None  # a psycopg.Connection, imported only on PostgreSQL
        self._held = False

    def leads(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
                self._held = False
            if self._held:
                # Still ours? A session that died took the lock with it.
                self._conn.execute("SELECT 1")
                return True
            got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK]).fetchone()
            self._held = bool(got and got[0])
            if self._held:
                log.info("this server now leads the policy engine and webhook deliveries")
            return self._held
        except psycopg.Error as error:
            if self._held:
                log.warning("lost the lead (%s); another server will take it", error)
            self._drop()
            return False

    def release(self) -> None:
        self._drop()

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=5,
            # Which process leads, for operators (and tests) reading pg_stat_activity.
            application_name=f"tether-leader:{socket.gethostname()}:{os.getpid()}",
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE_S,
            keepalives_interval=KEEPALIVE_INTERVAL_S,
            keepalives_count=KEEPALIVE_COUNT,
        )
        # The server's side of the same: it frees the lock of a leader that stopped answering.
        conn.execute(f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE_S}")
        conn.execute(f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_S}")
        conn.execute(f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}")
        return conn

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            try:
                conn.close()  # ends the session, and so frees the lock
            except Exception:  # closing a broken connection may fail too
                log.debug("closing the leader connection failed", exc_info=True)


def leadership_for(url: str, replicated: bool) -> Leadership:
    return AdvisoryLockLeadership(url) if replicated else SoleServer()
