"""Run a WSGI app under waitress on a background thread and stop it gracefully.

Waitress runs in this process, on threads, so requests share memory with the loaded models; on
stop, the listener closes at once, idle keep-alive connections close, and in-flight requests
finish (within a timeout) before the worker threads end.

Waitress refuses some requests itself, before the app: a body over the app's limit (as soon as
its Content-Length is read), a malformed request line or chunked body. Those refusals have the
app's JSON error shape too (`error_body`), and the connection then closes without a reset: the
server sends the answer, shuts down its side, and reads and drops what the client still sends
(at most DRAIN_BYTES, for at most DRAIN_SECONDS). Closing with unread data would make the kernel
answer the client's next segment with RST, which can destroy the 413 before the client reads it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

log = logging.getLogger("tether.agent.http")

# A client refused mid-body may send it to the end before it reads the answer; on loopback
# 256 MiB takes well under a second. A client sending more, or longer, gets the reset.
DRAIN_BYTES = 256 * 1024 * 1024
DRAIN_SECONDS = 5.0
_DRAIN_CHUNK = 256 * 1024


def error_body(message: str) -> bytes:
    """Return the body of a refusal: the Open Inference Protocol's `{"error": message}`."""
    return json.dumps({"error": message}, separators=(",", ":")).encode()


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
            # Waitress refuses a Content-Length at or over this before buffering a byte of it.
            options["max_request_body_size"] = body_limit + 1
        options.update(self._adjustments)
        self._server = create_server(self.app, map={}, **options)
        self._server.channel_class = _Channel
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


class _Refusal(ErrorTask):
    """Answer a request waitress refuses before the app, in the app's JSON error shape."""

    def execute(self) -> None:
        error = self.request.error
        if error.code == 413:
            # Waitress refuses from max_request_body_size on: the largest body taken is one less.
            limit = self.channel.adj.max_request_body_size - 1
            message = f"request body is over the limit of {limit} bytes"
        else:
            message = f"{error.reason.lower()}: {error.body}"
        body = error_body(message)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.channel.refused = True  # before the write: the main thread may close right after
        self.write(body)


class _Channel(HTTPChannel):
    """An HTTP channel that, after a refusal, drains the rest of the request before closing."""

    error_task_class = _Refusal
    request: Any  # waitress's parser of the request being read, or None
    refused = False  # set by _Refusal: the client may still be sending the refused body
    _drain_until: float | None = None
    _drained = 0

    def send_continue(self) -> None:
        # A client waiting on `Expect: 100-continue` gets the refusal instead, and sends nothing.
        if self.request is not None and self.request.error is not None:
            return
        super().send_continue()

    def handle_close(self) -> None:
        if self.refused and self._drain_until is None and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_WR)  # the refusal is out: FIN after it
            except OSError:
                pass
            else:
                self._drain_until = time.monotonic() + DRAIN_SECONDS
                self.will_close = False
                if self.request is not None:  # bytes of the refused body, read as a next request
                    self.request.close()
                    self.request = None
                return
        super().handle_close()

    def readable(self) -> bool:
        if self._drain_until is None:
            return bool(super().readable())
        if time.monotonic() >= self._drain_until:
            self.will_close = True  # writable() now holds, and handle_write closes
            return False
        return True

    def handle_read(self) -> None:
        if self._drain_until is None:
            super().handle_read()
            return
        try:
            data = self.recv(_DRAIN_CHUNK)  # b"" once the client closed: recv closed it too
        except OSError:
            super().handle_close()
            return
        self._drained += len(data)
        if data and self._drained >= DRAIN_BYTES:
            super().handle_close()
