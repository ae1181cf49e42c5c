"""Uploads stream the artifact in chunks and report progress; the bar draws on a terminal."""

from __future__ import annotations

import io
import os

import httpx

from control_plane.cli.client import OperatorClient
from control_plane.cli.model import _progress
from control_plane.cli.upload import CountingReader

SIZE = 300 * 1024 + 7  # several of httpx's 64 KiB multipart chunks


def test_the_multipart_body_reads_the_file_in_chunks_with_a_content_length(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(SIZE))
    positions: list[int] = []
    with open(path, "rb") as handle:
        reader = CountingReader(handle, positions.append)
        request = httpx.Request("POST", "http://x/", files={"artifact": ("big.bin", reader)})
        assert int(request.headers["Content-Length"]) > SIZE  # found by fstat, not by reading
        assert positions == []
        body = b"".join(request.stream)  # type: ignore[arg-type]
    assert reader.largest_read <= 64 * 1024
    assert positions == sorted(positions) and positions[-1] == SIZE and len(positions) >= 5
    assert len(body) == int(request.headers["Content-Length"])


def test_push_reports_progress_and_stores_the_exact_bytes(app, admin_token, api, tmp_path):
    data = os.urandom(SIZE)
    path = tmp_path / "big.joblib"
    path.write_bytes(data)
    positions: list[int] = []
    transport = httpx.WSGITransport(app=app)
    with (
        OperatorClient("http://tether.test", admin_token, transport=transport) as client,
        open(path, "rb") as handle,
    ):
        version = client.push_version(
            "big", handle, {"format": "joblib"}, filename=path.name, on_progress=positions.append
        )
    assert version.artifact.size == SIZE
    assert positions[-1] == SIZE and len(positions) >= 5
    downloaded = api.get("/api/v1/models/big/versions/1/artifact")
    assert downloaded.status_code == 200 and downloaded.data == data


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with _progress(1000, "Uploading wine.joblib", visible=True) as report:
        for position in (400, 1000):
            report(position)
    assert "Uploading wine.joblib" in terminal.getvalue() and "100%" in terminal.getvalue()

    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    with _progress(1000, "Uploading", visible=False) as report:  # --json
        report(1000)
    assert quiet.getvalue() == ""

    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    with _progress(1000, "Uploading", visible=True) as report:
        report(1000)
    assert piped.getvalue() == ""
