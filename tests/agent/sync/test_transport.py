"""The copy-free artifact transport over a real loopback socket: ranges, cuts, errors, proxies."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agent.local.cache import ArtifactCache
from agent.sync.client import ControlPlaneClient, Rejected, Unreachable
from agent.sync.transports import BodyTransport, goes_direct

pytestmark = pytest.mark.e2e

BODY = os.urandom(3_000_000)
DIGEST = hashlib.sha256(BODY).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serve BODY with Range; `cut` drops the first connection after that many bytes."""

    cut: int | None = None
    seen: list[dict] = []

    def do_GET(self) -> None:
        Handler.seen.append(dict(self.headers))
        if self.headers.get("Authorization") != "Bearer agent-token":
            self.send_error(401)
            return
        start = 0
        if (wanted := self.headers.get("Range", "")).startswith("bytes="):
            start = int(wanted[6:].rstrip("-"))
        payload = BODY[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(payload)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
        self.end_headers()
        if Handler.cut is not None:
            self.wfile.write(payload[: Handler.cut])
            Handler.cut = None
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        pass  # the cut connection is on purpose


@pytest.fixture
def server() -> Iterator[str]:
    Handler.cut = None
    Handler.seen = []
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_client_uses_it_for_artifacts_and_reads_into_buffers(server, tmp_path):
    with ControlPlaneClient(server, "agent-token", agent_id="a") as client:
        with client.download("m", 1) as stream:
            assert stream.readinto is not None
            buffer = memoryview(bytearray(1 << 20))
            total = bytearray()
            while count := stream.readinto(buffer):
                total += buffer[:count]
        assert bytes(total) == BODY
        assert Handler.seen[0]["Accept-Encoding"] == "identity"
        assert Handler.seen[0]["User-Agent"] == "tether-agent"


def test_a_cut_download_resumes_over_the_socket(server, tmp_path):
    Handler.cut = 1_000_000
    cache = ArtifactCache(tmp_path, reserve_bytes=0)
    with ControlPlaneClient(server, "agent-token", agent_id="a") as client:
        opener = lambda offset: client.download("m", 1, offset)  # noqa: E731
        with pytest.raises(Exception, match="ended at byte 1000000"):
            cache.get(DIGEST, len(BODY), opener)
        path = cache.get(DIGEST, len(BODY), opener)
    assert Handler.seen[1]["Range"] == "bytes=1000000-"
    assert path.read_bytes() == BODY


def test_errors_are_httpx_errors(server):
    with ControlPlaneClient(server, "wrong", agent_id="a") as client:
        with pytest.raises(Rejected) as caught, client.download("m", 1):
            pass
        assert caught.value.status == 401
    from tests.support.processes import free_port

    client = ControlPlaneClient(f"http://127.0.0.1:{free_port()}", "t", agent_id="a")
    with client, pytest.raises(Unreachable, match="ConnectError"), client.download("m", 1):
        pass


def test_a_stream_iterates_too(server):
    with httpx.Client(transport=BodyTransport()) as http:
        response = http.get(f"{server}/x", headers={"Authorization": "Bearer agent-token"})
    assert response.content == BODY


def test_proxies_in_the_environment_are_respected(monkeypatch):
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    assert goes_direct("http://cp.example.com")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert not goes_direct("https://cp.example.com")
    assert goes_direct("http://cp.example.com")
    monkeypatch.setenv("NO_PROXY", "cp.example.com")
    assert goes_direct("https://cp.example.com")
