"""The inference server on a real loopback socket, including a graceful stop."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from agent.serving import server as http_server
from agent.serving.app import DEFAULT_MAX_BODY_BYTES, InferenceServer, create_inference_app
from agent.serving.slots import Deployed
from tests.agent.serving.support import Gate, assert_error

ROW = {"a": 1.0, "b": 2.0}


@pytest.fixture
def slow(slots) -> Gate:
    gate = Gate()
    slots.swap("slow", Deployed(gate.model(7.0)))
    yield gate
    gate.gate.set()  # never leave a server thread waiting


@pytest.fixture
def server(slots, slow):
    server = InferenceServer(create_inference_app(slots, is_ready=lambda: True), port=0, threads=4)
    server.start()
    yield server
    server.stop(timeout=2)


def test_serves_predictions_over_http(server, wine_rows):
    assert server.port != 0
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").status_code == 200
        body = client.post("/predict/wine", json={"instances": wine_rows}).json()
        assert body["predictions"] == [0, 0, 0] and body["model"] == "wine"
        infer = client.post(
            "/v2/models/wine/infer",
            json={
                "inputs": [
                    {"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
                    for k, v in wine_rows[0].items()
                ]
            },
        ).json()
        assert infer["outputs"][0]["data"] == [0]
        response = client.post(
            "/predict/wine", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "not valid JSON")
        assert client.get("/").headers["Server"] == "tether-agent"


def test_body_over_the_limit_is_a_json_413(slots):
    app = create_inference_app(slots, is_ready=lambda: True, max_body_bytes=1000)
    with InferenceServer(app, port=0) as server, httpx.Client(base_url=server.url) as client:
        response = client.post("/predict/wine", content=b"x" * 5000)
    assert_error(response, 413, "over the limit of 1000 bytes")


MIB = 1024 * 1024


def test_a_body_past_the_default_limit_is_a_json_413_the_client_reads(slots, wine_rows, caplog):
    """The audit's case: 65 MiB sent to the end at the 64 MiB limit, then the answer read."""
    caplog.set_level(logging.DEBUG)
    body = b"x" * (65 * MIB)
    limit = f"request body is over the limit of {DEFAULT_MAX_BODY_BYTES} bytes"
    app = create_inference_app(slots, is_ready=lambda: True)
    with InferenceServer(app, port=0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(_head(len(body)))
            sock.sendall(body)  # no reset: the server drains what it refused
            head, answer = _read_to_the_end(sock)  # EOF, not RST, after the answer
        assert head.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in head
        assert b"Content-Type: application/json" in head
        assert answer == {"error": limit}

        with httpx.Client(base_url=server.url, timeout=20) as client:
            assert_error(client.post("/predict/wine", content=body), 413, limit)
            ok = client.post("/predict/wine", json={"instances": wine_rows})
            assert ok.status_code == 200  # the server still answers
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_client_expecting_100_continue_gets_the_413_and_sends_nothing(slots):
    app = create_inference_app(slots, is_ready=lambda: True, max_body_bytes=1000)
    with (
        InferenceServer(app, port=0) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(_head(5000, b"Expect: 100-continue\r\n"))  # what curl sends
        head, answer = _read_to_the_end(sock)
    assert head.startswith(b"HTTP/1.1 413 "), head  # not 100 Continue
    assert answer == {"error": "request body is over the limit of 1000 bytes"}


@pytest.mark.parametrize("stall", [True, False], ids=["client stalls", "client sends on"])
def test_draining_a_refused_body_is_bounded(slots, monkeypatch, stall):
    """A client that stops sending, or sends past DRAIN_BYTES, is cut off, not waited for."""
    monkeypatch.setattr(http_server, "DRAIN_SECONDS", 0.2)
    monkeypatch.setattr(http_server, "DRAIN_BYTES", 2 * MIB)
    app = create_inference_app(slots, is_ready=lambda: True, max_body_bytes=1000)
    with InferenceServer(app, port=0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(_head(100 * MIB) + b"x" * 1000)
            started = time.monotonic()
            with pytest.raises(OSError):  # the server closed: the kernel resets what follows
                while time.monotonic() - started < 8:
                    sock.sendall(b"x" * (64 * 1024 if stall else MIB))
                    if stall:
                        time.sleep(0.25)
            assert time.monotonic() - started < 5
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/v2/health/live").status_code == 200


def _head(length: int, extra: bytes = b"") -> bytes:
    return (
        b"POST /predict/wine HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % length
    )


def _read_to_the_end(sock: socket.socket) -> tuple[bytes, object]:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, json.loads(body)


def test_stop_lets_the_request_in_flight_finish(server, slow):
    with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=server.url, timeout=10) as client:
        in_flight = pool.submit(client.post, "/predict/slow", json={"instances": [ROW]})
        assert slow.entered.wait(5)

        stopped = pool.submit(server.stop, 5.0)
        _wait_until_refused(server.url)  # the listener closes at once, the request goes on

        slow.gate.set()
        response = in_flight.result(timeout=5)
        stopped.result(timeout=6)

    assert response.status_code == 200 and response.json()["predictions"] == [7.0]


def test_stop_is_bounded_by_its_timeout(server, slow):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        thread = threading.Thread(
            target=lambda: _ignore(client.post, "/predict/slow", json={"instances": [ROW]})
        )
        thread.start()
        assert slow.entered.wait(5)

        started = time.monotonic()
        server.stop(timeout=0.3)
        elapsed = time.monotonic() - started

        slow.gate.set()
        thread.join(5)
    assert elapsed < 2.0


def test_idle_keep_alive_connections_do_not_hold_up_stop(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/v2/health/live").status_code == 200  # leaves a kept-alive connection
        started = time.monotonic()
        server.stop(timeout=5)
        assert time.monotonic() - started < 1.0


def _wait_until_refused(url: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/v2/health/live", timeout=0.5)
        except httpx.TransportError:
            return
        time.sleep(0.02)
    raise AssertionError("the server kept accepting connections after stop()")


def _ignore(call, *args, **kwargs) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server was told not to wait for it
        call(*args, **kwargs)
