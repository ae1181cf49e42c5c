"""`tether server` as a real process on a loopback port, driven with raw HTTP."""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}
    ) as client:
        yield client


def test_first_start_writes_the_admin_token_privately_and_prints_it_once(tmp_path: Path):
    data = tmp_path / "data"
    first = ServerProcess(data).start()
    first.stop()
    token_file = data / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token.startswith("tether_admin_")
    assert first.log().count(token) == 1
    second = ServerProcess(data).start()
    try:
        assert token not in second.log().replace(first.log(), "")
        response = httpx.get(
            f"{second.url}/api/v1/models", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200
    finally:
        second.stop()


def test_readme_tour_over_raw_http(http: httpx.Client, wine_model_file: Path):
    with wine_model_file.open("rb") as artifact:
        pushed = http.post(
            "/api/v1/models/wine/versions",
            files={"artifact": ("wine.joblib", artifact)},
            data={"metadata": '{"metrics": {"accuracy": 0.98}}'},
        )
    assert pushed.status_code == 201, pushed.text
    version = pushed.json()["version"]
    assert http.put("/api/v1/environments/production", json={}).status_code in (200, 201)
    assert (
        http.put(
            "/api/v1/environments/production/desired/wine", json={"version": version}
        ).status_code
        == 200
    )
    read = http.get("/api/v1/environments/production/desired")
    assert read.json()["models"]["wine"] == {"version": version, "shadow": None}
    again = http.get(
        "/api/v1/environments/production/desired", headers={"If-None-Match": read.headers["ETag"]}
    )
    assert again.status_code == 304


def test_flask_errors_use_the_json_shape_on_the_real_server(server, http: httpx.Client):
    for response, status in (
        (http.get("/api/v1/no-such-thing"), 404),
        (http.delete("/api/v1/models"), 405),
        (httpx.get(f"{server.url}/api/v1/models"), 401),
    ):
        assert response.status_code == status
        assert set(response.json()["error"]) == {"code", "message", "details"}


def test_interrupted_upload_leaves_no_version_and_no_file(server, http: httpx.Client):
    before = http.get("/api/v1/models").json()
    boundary = "tetherboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{{}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; filename="m.joblib"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    declared = len(head) + 5_000_000
    request = (
        f"POST /api/v1/models/cut/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.admin_token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request + head + b"x" * 1_000_000)
        time.sleep(0.5)  # let the server write part of it to disk
    incoming = server.data_dir / "artifacts" / "incoming"
    deadline = time.monotonic() + 10
    while any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(incoming.iterdir()) == []
    assert http.get("/api/v1/models").json() == before
    assert http.get("/api/v1/models/cut").status_code == 404
