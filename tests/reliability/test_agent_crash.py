"""An agent SIGKILLed mid-download, mid-swap and mid-flush: it serves its last good model as soon
as it is back (with the control plane unreachable), then converges and loses no report.
"""

from __future__ import annotations

import hashlib
import io
import signal

import joblib
import pytest

from agent.local.outbox import Outbox
from agent.local.state import StateStore, read_state_file
from common.reports import Report
from tests.agent.slow_model import SlowRegressor
from tests.reliability.conftest import enroll_agent, model_bytes
from tests.support.agent_process import eventually
from tests.support.operator import ROWS
from tests.support.reports import shadow_report

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


def test_killed_mid_download_serves_the_old_model_at_once_then_resumes(
    admin, proxy, small_models, tmp_path
):
    admin.environment("crash-download")
    admin.push("dl", small_models[0])
    big = admin.push("dl", model_bytes(0.3, padding=12 * MIB))
    first = admin.desire("crash-download", "dl", 1)
    agent = enroll_agent(admin, "crash-download", tmp_path / "agent", url=proxy.url).start()
    try:
        eventually(lambda: admin.converged("crash-download", first), timeout=30)
        proxy.rate = 3 * MIB  # bytes/s: the download takes seconds
        admin.desire("crash-download", "dl", 2)
        digest, size = big["artifact"]["sha256"], big["artifact"]["size"]
        part = agent.data_dir / "artifacts" / "partial" / f"{digest}.part"
        eventually(lambda: part.exists() and part.stat().st_size >= MIB, timeout=30)
        agent.stop(signal.SIGKILL)
        assert 0 < part.stat().st_size < size
        assert not (agent.data_dir / "artifacts" / "sha256" / digest).exists()

        proxy.mode = "down"  # the control plane is unreachable when the agent comes back
        agent.start()
        assert agent.serving_version("dl", ROWS) == 1  # at once: no eventually

        proxy.mode, proxy.rate = "ok", None
        second = admin.revision("crash-download")
        eventually(lambda: admin.converged("crash-download", second), timeout=30)
        assert agent.serving_version("dl", ROWS) == 2
        assert "resuming artifact" in agent.log()
        cached = agent.data_dir / "artifacts" / "sha256" / digest
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    finally:
        agent.stop()


def slow_model_bytes() -> bytes:
    buffer = io.BytesIO()
    joblib.dump(SlowRegressor(), buffer)
    return buffer.getvalue()


def test_killed_mid_swap_keeps_the_old_model_then_converges(admin, proxy, tmp_path):
    """v2's smoke test takes 2 s: the kill lands after its download, before the swap."""
    admin.environment("crash-swap")
    artifact = slow_model_bytes()
    admin.push("swap", artifact, example=[{"x": 1.0, "sleep": 0.0}])
    admin.push("swap", artifact + b"\n", example=[{"x": 1.0, "sleep": 2.0}])
    rows = [{"x": 1.0, "sleep": 0.0}]
    first = admin.desire("crash-swap", "swap", 1)
    agent = enroll_agent(admin, "crash-swap", tmp_path / "agent", url=proxy.url).start()
    try:
        eventually(lambda: admin.converged("crash-swap", first), timeout=30)
        second = admin.desire("crash-swap", "swap", 2)
        eventually(lambda: "downloading" in str(admin.actual("crash-swap", "swap")), timeout=30)
        cached = agent.data_dir / "artifacts" / "sha256"
        eventually(lambda: len(list(cached.iterdir())) == 2, timeout=30)  # v2 in, now loading
        assert agent.serving_version("swap", rows) == 1
        agent.stop(signal.SIGKILL)
        state = read_state_file(agent.data_dir)
        assert state is not None and state.applied is not None
        assert state.applied.models["swap"].primary.version == 1

        proxy.mode = "down"
        agent.start()
        assert agent.serving_version("swap", rows) == 1

        proxy.mode = "ok"
        eventually(lambda: admin.converged("crash-swap", second), timeout=30)
        assert agent.serving_version("swap", rows) == 2
    finally:
        agent.stop()


def test_killed_mid_flush_every_report_arrives_once(admin, proxy, small_models, tmp_path):
    """1,500 reports wait in the outbox; the agent is killed while it sends them (slowly)."""
    admin.environment("crash-flush")
    admin.push("flush", small_models[0])
    first = admin.desire("crash-flush", "flush", 1)
    agent = enroll_agent(
        admin,
        "crash-flush",
        tmp_path / "agent",
        url=proxy.url,
        TETHER_REPORT_INTERVAL="0.5",
    )
    reports = [
        Report.model_validate(shadow_report("flush", 1, 1, shadowed=10, agreed=9))
        for _ in range(1500)
    ]
    outbox = Outbox(agent.data_dir / "outbox.db")
    try:
        outbox.put(reports)
        proxy.mode, proxy.delay = "slow", 0.25  # each batch of 100 takes a quarter second
        agent.start()
        eventually(lambda: 0 < outbox.depth() < 1500, timeout=30, interval=0.02)
        agent.stop(signal.SIGKILL)
        assert 0 < outbox.depth() < 1500  # some acknowledged, some not

        proxy.mode = "ok"
        agent.start()
        eventually(lambda: outbox.depth() == 0, timeout=30)
        eventually(lambda: admin.converged("crash-flush", first), timeout=30)
        identity = StateStore(agent.data_dir).load_identity()
        assert identity is not None
        stored = admin.http.get(
            "/api/v1/reports", params={"agent": identity.agent_id, "limit": 5000}
        ).json()["reports"]
        ids = [r["id"] for r in stored]
        assert sorted(ids) == sorted(r.id for r in reports)  # every one, each once
    finally:
        outbox.close()
        agent.stop()
