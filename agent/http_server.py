"""Run a WSGI app under waitress on a background thread and stop it gracefully.

Waitress runs in this process, on threads, so requests share memory with the loaded models; on
stop, the listener closes at once, idle keep-alive connections close, and in-flight requests
finish (within a timeout) before the worker threads end.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger("tether.agent.http")


class InferenceServer:
    """Run a WSGI app under waitress on a background thread, and stop it gracefully."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8501,
        threads: int = 8,
        **adjustments: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.threads = threads
        self._requested_port = port
        self._adjustments = adjustments
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._deadline = 0.0

    @property
    def port(self) -> int:
        """Return the port listened on (the real one once started, even if 0 was asked)."""
        return self._server.effective_port if self._server is not None else self._requested_port

    @property
    def url(self) -> str:
        """Return the server's base URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind the socket and start serving on a background thread."""
        if self._server is not None:
            raise RuntimeError("server already started")
        body_limit = getattr(self.app, "config", {}).get("MAX_CONTENT_LENGTH")
        options: dict[str, Any] = {
            "host": self.host,
            "port": self._requested_port,
            "threads": self.threads,
            "ident": "tether-agent",
            "asyncore_use_poll": True,
            # The app is never behind a proxy here, so skip waitress's header middleware.
            "clear_untrusted_proxy_headers": False,
        }
        if body_limit:
            # Let a little more through so the app, not waitress, answers 413 in JSON.
            options["max_request_body_size"] = body_limit + 1024 * 1024
        options.update(self._adjustments)
        self._server = create_server(self.app, map={}, **options)
        self._thread = threading.Thread(
            target=self._serve, name=f"inference-server-{self.port}", daemon=True
        )
        self._thread.start()
        log.info("inference server listening on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (within `timeout`), then close."""
        if self._thread is None or self._stopping.is_set():
            if self._thread is not None:
                self._thread.join(timeout)
            return
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        self._server.pull_trigger()  # wake the loop from its poll
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            log.warning("inference server did not stop within %.1f s", timeout)

    def __enter__(self) -> InferenceServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        server = self._server
        loop_timeout = server.adj.asyncore_loop_timeout
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=loop_timeout, map=server._map, use_poll=True, count=1)
            self._drain(server)
        except Exception:
            log.exception("inference server loop failed")
        finally:
            remaining = max(0.0, self._deadline - time.monotonic())
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=remaining)
            wasyncore.close_all(server._map)
            log.info("inference server on port %s stopped", server.effective_port)

    def _drain(self, server: Any) -> None:
        """Close the listener, then run the loop until every channel is idle or time is up."""
        # dispatcher.close, not server.close: the trigger must live on to wake the loop.
        server.accepting = False
        wasyncore.dispatcher.close(server)
        while True:
            busy = False
            for channel in list(server.active_channels.values()):
                if channel.requests or channel.total_outbufs_len or channel.request is not None:
                    busy = True
                else:
                    channel.will_close = True  # idle keep-alive: closed on the next pass
            if not busy or time.monotonic() >= self._deadline:
                break
            wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)
        wasyncore.loop(timeout=0.0, map=server._map, use_poll=True, count=1)
