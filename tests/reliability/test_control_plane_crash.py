"""The control plane SIGKILLed (its whole process group) mid-work, then restarted on its data dir.

tests/e2e/test_closed_loop.py::test_control_plane_killed_during_a_burst_of_reports_loses_none
checks that live traffic's report windows keep no gap across a kill. Here the reports are known
in advance, so the check is exact: every acknowledged and every unacknowledged one is stored once.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from agent.local.outbox import Outbox
from agent.local.state import StateStore
from common.reports import Report
from tests.reliability.conftest import enroll_agent
from tests.support.agent_process import AgentProcess, eventually
from tests.support.faulty_proxy import FaultyProxy
from tests.support.operator import Operator
from tests.support.processes import ServerProcess
from tests.support.reports import shadow_report
from tests.support.store import integrity

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
PER_AGENT = 600


@pytest.fixture
def server(tmp_path: Path):
    process = ServerProcess(tmp_path / "cp").start()
    try:
        yield process
    finally:
        process.stop()


def restart(server: ServerProcess) -> ServerProcess:
    """Start a new control plane on the killed one's data dir and port."""
    return ServerProcess(server.data_dir, port=server.port).start()


def test_killed_during_a_burst_of_reports_from_several_agents_stores_each_once(
    server, small_models, tmp_path
):
    """Three agents each hold 600 reports; the control plane dies while they send them."""
    with contextlib.ExitStack() as stack:
        admin = Operator.of(server)
        stack.callback(admin.close)
        admin.environment("burst")
        admin.push("burst", small_models[0])
        admin.desire("burst", "burst", 1)
        proxy = stack.enter_context(FaultyProxy(("127.0.0.1", server.port), mode="slow"))
        proxy.delay = 0.2  # each batch of 100 takes a fifth of a second: the burst lasts
        agents: list[AgentProcess] = []
        outboxes: list[Outbox] = []
        sent: dict[str, set[str]] = {}
        for number in range(3):
            agent = enroll_agent(
                admin, "burst", tmp_path / f"agent-{number}", url=proxy.url,
                TETHER_REPORT_INTERVAL="0.5",
            )  # fmt: skip
            stack.callback(agent.stop)
            reports = [
                Report.model_validate(shadow_report("burst", 1, 1, shadowed=10, agreed=9))
                for _ in range(PER_AGENT)
            ]
            outbox = Outbox(agent.data_dir / "outbox.db")
            stack.callback(outbox.close)
            outbox.put(reports)
            identity = StateStore(agent.data_dir).load_identity()
            assert identity is not None
            sent[identity.agent_id] = {r.id for r in reports}
            agents.append(agent)
            outboxes.append(outbox)
        starting = [threading.Thread(target=agent.start) for agent in agents]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()

        def waiting() -> int:
            return sum(outbox.depth() for outbox in outboxes)

        eventually(lambda: waiting() < 3 * PER_AGENT - 150, timeout=60, interval=0.02)
        server.stop(signal.SIGKILL)
        assert waiting() > 0  # some reports were not acknowledged when it died
        assert integrity(server.data_dir) == "ok"
        proxy.mode = "ok"
        revived = restart(server)
        stack.callback(revived.stop)
        eventually(lambda: waiting() == 0, timeout=60)
        for agent_id, ids in sent.items():
            stored = admin.http.get(
                "/api/v1/reports", params={"agent": agent_id, "limit": 5000}
            ).json()["reports"]
            assert sorted(r["id"] for r in stored) == sorted(ids)  # every one, each once


class SlowUpload:
    """A multipart upload of `size` bytes declared up front, sent a megabyte at a time."""

    def __init__(self, server: ServerProcess, model: str, size: int) -> None:
        boundary = "tether-fault-boundary"
        self.head = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="metadata"\r\n\r\n'
            f"{json.dumps({'input_example': None})}\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="artifact"; filename="big.joblib"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        length = len(self.head) + size + len(tail)
        self.request = (
            f"POST /api/v1/models/{model}/versions HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {server.admin_token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        self.socket = socket.create_connection(("127.0.0.1", server.port))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.sendall(self.request + self.head)
            while not self.stop.is_set():
                self.socket.sendall(b"\x00" * MIB)
                time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.socket.close()


def test_killed_mid_upload_and_mid_desired_changes_leaves_a_consistent_store(server, small_models):
    admin = Operator.of(server)
    admin.environment("crash")
    admin.push("crash", small_models[0])
    admin.push("crash", small_models[1])
    artifacts = server.data_dir / "artifacts"
    stored_before = sorted(p.name for p in (artifacts / "sha256").iterdir())

    # A stream of desired-state changes, each acknowledged revision noted.
    acknowledged: list[tuple[int, int]] = []  # (revision, version)

    def change_desired() -> None:
        with httpx.Client(
            base_url=server.url,
            timeout=10,
            headers={"Authorization": f"Bearer {server.admin_token}"},
        ) as http:
            version = 1
            while True:
                version = 3 - version
                try:
                    response = http.put(
                        "/api/v1/environments/crash/desired/crash", json={"version": version}
                    )
                except httpx.TransportError:
                    return
                assert response.status_code == 200, response.text
                acknowledged.append((response.json()["revision"], version))

    upload = SlowUpload(server, "crash", size=512 * MIB)
    changer = threading.Thread(target=change_desired, daemon=True)
    try:
        upload.thread.start()
        changer.start()
        incoming = artifacts / "incoming"
        eventually(lambda: any(p.stat().st_size >= 4 * MIB for p in incoming.iterdir()), timeout=60)
        eventually(lambda: len(acknowledged) >= 10, timeout=60)
        server.stop(signal.SIGKILL)
        admin.close()
        changer.join(timeout=30)
        assert list(incoming.iterdir())  # the cut-off upload's file is still there
    finally:
        upload.close()
    database = server.data_dir / "tether.db"
    assert integrity(server.data_dir) == "ok"
    # As a kill between an upload's rename into place and its commit would leave it:
    orphan = artifacts / "sha256" / ("0" * 64)
    orphan.write_bytes(b"never a version")

    revived = restart(server)
    try:
        assert sorted(p.name for p in (artifacts / "sha256").iterdir()) == stored_before
        assert list((artifacts / "incoming").iterdir()) == []
        admin = Operator.of(revived)
        versions = admin.http.get("/api/v1/models/crash/versions").json()["versions"]
        assert [v["version"] for v in versions] == [1, 2]  # no partial version
        newest = admin.http.get("/api/v1/environments/crash/history", params={"limit": 1}).json()[
            "entries"
        ][0]
        with sqlite3.connect(database) as conn:
            rows = conn.execute(
                "SELECT revision, after FROM history WHERE environment = 'crash' ORDER BY id"
            ).fetchall()
            (revision,) = conn.execute(
                "SELECT revision FROM environments WHERE name = 'crash'"
            ).fetchone()
        conn.close()
        # Each change is there with its audit row, or neither is: revisions run without a gap
        # up to the environment's, and what is desired is what the last audit row says.
        assert [r for r, _ in rows] == list(range(rows[0][0], revision + 1))
        desired = admin.http.get("/api/v1/environments/crash/desired").json()
        assert desired["revision"] == revision == newest["revision"]
        assert desired["models"]["crash"] == newest["after"] == json.loads(rows[-1][1])
        audited = {r: json.loads(after)["version"] for r, after in rows}
        for acked_revision, version in acknowledged:
            assert audited[acked_revision] == version
        # And it works: the next upload gets the next version number.
        assert admin.push("crash", small_models[0])["version"] == 3
        admin.close()
    finally:
        revived.stop()
