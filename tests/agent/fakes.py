"""A scriptable artifact server for httpx.MockTransport: cut, corrupt, pad or ignore Range."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx


class CutStream(httpx.SyncByteStream):
    """A body that sends `data` in chunks, then fails like a dropped connection."""

    def __init__(self, data: bytes, chunk: int = 64 * 1024, fail: bool = True) -> None:
        self.data = data
        self.chunk = chunk
        self.fail = fail
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            piece = self.data[start : start + self.chunk]
            self.sent += len(piece)
            yield piece
        if self.fail:
            raise httpx.ReadError("connection reset by peer")


@dataclass
class ArtifactServer:
    """Serve one artifact the way a real or a broken server would, and record each request."""

    body: bytes
    cut_after: int | None = None  # first response stops after this many bytes, then fails
    extra: bytes = b""  # sent after the artifact, as if the server had more
    ignore_range: bool = False
    status: int = 200
    requests: list[httpx.Request] = field(default_factory=list)
    streams: list[CutStream] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"code": "x", "message": "no"}})
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if match and not self.ignore_range:
            start = int(match.group(1))
        payload = self.body[start:] + self.extra
        cut = self.cut_after is not None and len(self.requests) == 1
        stream = CutStream(payload[: self.cut_after] if cut else payload, fail=cut)
        self.streams.append(stream)
        headers = {"Content-Length": str(len(payload)), "ETag": '"digest"'}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(self.body) - 1}/{len(self.body)}"
            return httpx.Response(206, headers=headers, stream=stream)
        return httpx.Response(200, headers=headers, stream=stream)

    def ranges(self) -> list[str | None]:
        return [request.headers.get("Range") for request in self.requests]

    def sent(self) -> list[int]:
        """Bytes actually handed to the client, per request."""
        return [stream.sent for stream in self.streams]


def route_artifacts(
    handler: Callable[[httpx.Request], httpx.Response], fallback: httpx.BaseTransport
) -> httpx.MockTransport:
    """Send artifact downloads to `handler` and everything else to the real app."""

    def dispatch(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/artifact"):
            return handler(request)
        return fallback.handle_request(request)

    return httpx.MockTransport(dispatch)
