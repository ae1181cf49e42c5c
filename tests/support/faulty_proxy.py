"""A small HTTP proxy on loopback that misbehaves on demand, for fault tests.

It sits between an agent and the control plane and handles one request per connection
(it answers `Connection: close`). Its `mode` can be changed at any time:

    ok          forward the request, relay the answer (throttled to `rate` bytes/s if set)
    slow        wait `delay` seconds, then forward (the client's timeout may strike first)
    reset       read the request, then reset the connection (RST, no answer)
    error       answer 500 with a JSON error body, never reaching the control plane
    garbage     answer 200 application/json with random bytes
    truncated   forward, then relay only the first half of the body (a consistent length)
    wrong_type  answer 200 text/html with an HTML page
    down        refuse to answer: close the connection as soon as it is accepted

Every request received is counted, with its time, in `requests`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import struct
import threading
import time
from typing import Any, NamedTuple

MODES = ("ok", "slow", "reset", "error", "garbage", "truncated", "wrong_type", "down")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
RELAY_CHUNK = 64 * 1024


class FaultyProxy:
    """Forward HTTP/1.1 requests to `upstream` (host, port), misbehaving as `mode` says."""

    def __init__(self, upstream: tuple[str, int], mode: str = "ok") -> None:
        self.upstream = upstream
        self.mode = mode
        self.delay = 2.0
        self.rate: float | None = None  # bytes per second of relayed bodies in "ok" mode
        self.requests: list[tuple[float, str, str]] = []  # (monotonic time, mode, path)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept, name="proxy", daemon=True)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown proxy mode {value!r}; one of {', '.join(MODES)}")
        self._mode = value

    def count(self, since: float = 0.0, path_part: str = "") -> int:
        """Count requests received since a time.monotonic() value, whose path has `path_part`."""
        with self._lock:
            return sum(1 for at, _, path in self.requests if at >= since and path_part in path)

    def __enter__(self) -> FaultyProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._acceptor.join()
        self._listener.close()
        with self._lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    # --- serving ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "down":
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._open.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            reader = conn.makefile("rb")
            try:
                request = _read_request(reader)
            finally:
                reader.close()
            if request is None:
                return
            mode = self.mode
            with self._lock:
                self.requests.append((time.monotonic(), mode, request.path))
            self._answer(conn, mode, request)
        except OSError:
            pass  # the client went away, or we were told to stop
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def _answer(self, conn: socket.socket, mode: str, request: _Request) -> None:
        if mode == "reset":
            # SO_LINGER with a zero timeout turns close() into a TCP reset.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if mode == "error":
            error = {"error": {"code": "internal", "message": "proxy says no", "details": None}}
            _send(conn, 500, "application/json", json.dumps(error).encode())
            return
        if mode == "garbage":
            _send(conn, 200, "application/json", os.urandom(512))
            return
        if mode == "wrong_type":
            _send(conn, 200, "text/html", b"<html><body>Gateway login required</body></html>")
            return
        if mode == "slow" and self._stopping.wait(self.delay):
            return
        self._forward(conn, mode, request)

    def _forward(self, conn: socket.socket, mode: str, request: _Request) -> None:
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            try:
                upstream.request(
                    request.method,
                    request.path,
                    body=request.body or None,
                    headers={k: v for k, v in request.headers if k.lower() not in HOP_BY_HOP},
                )
                response = upstream.getresponse()
            except OSError:
                _send(conn, 502, "text/plain", b"bad gateway")
                return
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            length = response.getheader("Content-Length")
            if mode == "truncated" or length is None:
                payload = response.read()
                if mode == "truncated":
                    payload = payload[: len(payload) // 2]
                kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
                _send_head(conn, response.status, response.reason, kept, len(payload))
                conn.sendall(payload)
                return
            _send_head(conn, response.status, response.reason, kept, None)
            self._relay(conn, response)
        finally:
            upstream.close()

    def _relay(self, conn: socket.socket, response: http.client.HTTPResponse) -> None:
        started = time.monotonic()
        sent = 0
        while chunk := response.read(RELAY_CHUNK):
            conn.sendall(chunk)
            sent += len(chunk)
            rate = self.rate
            if rate and self.mode == "ok":
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0 and self._stopping.wait(ahead):
                    return


class _Request(NamedTuple):
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


def _read_request(reader: Any) -> _Request | None:
    line = reader.readline(65536)
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: list[tuple[str, str]] = []
    while (raw := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    return _Request(method, path, headers, reader.read(length) if length else b"")


def _send_head(
    conn: socket.socket,
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    length: int | None,
) -> None:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def _send(conn: socket.socket, status: int, content_type: str, body: bytes) -> None:
    reason = http.client.responses.get(status, "")
    _send_head(conn, status, reason, [("Content-Type", content_type)], len(body))
    conn.sendall(body)
