"""The agent as users run it: real `tether server` and `tether agent` processes on loopback."""

from __future__ import annotations

import io
import signal
import threading
import time
from pathlib import Path

import httpx
import joblib
import pytest

from agent.daemon import AgentDaemon
from agent.local.state import Identity
from agent.local.trust import TrustStore
from agent.settings import AgentSettings
from agent.sync.client import ControlPlaneClient
from common.clock import utcnow
from common.schemas import EnrollRequest
from tests.agent.slow_model import SlowRegressor
from tests.support.agent_process import AgentProcess, eventually
from tests.support.models import train_wine
from tests.support.operator import ROWS, Operator
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e


def model_bytes(c: float) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(train_wine(c=c), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def versions() -> list[bytes]:
    return [model_bytes(1.0), model_bytes(0.2)]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("cp") / "data") as server:
        yield server


def new_agent(tmp_path: Path, admin: Operator, env: str) -> AgentProcess:
    agent = AgentProcess(tmp_path / f"agent-{env}")
    agent.enroll(admin.url, env, admin.enrollment_token(env))
    return agent


def test_desired_state_changes_and_the_agent_converges(shared_server, tmp_path, versions):
    admin = Operator.of(shared_server)
    admin.environment("converge")
    admin.push("wine", versions[0])
    admin.push("wine", versions[1])
    first = admin.desire("converge", "wine", 1)
    with new_agent(tmp_path, admin, "converge") as agent:
        eventually(lambda: admin.converged("converge", first, agents=1))
        assert agent.serving_version("wine", ROWS) == 1
        assert httpx.get(f"{agent.url}/v2/health/ready").status_code == 200
        second = admin.desire("converge", "wine", 2)
        eventually(lambda: admin.converged("converge", second, agents=1))
        assert agent.serving_version("wine", ROWS) == 2


def test_wrong_bytes_are_refused_and_the_old_model_keeps_serving(shared_server, tmp_path, versions):
    admin = Operator.of(shared_server)
    admin.environment("tamper")
    admin.push("wine", versions[0])
    bad = admin.push("wine", model_bytes(0.05))
    first = admin.desire("tamper", "wine", 1)
    stored = shared_server.data_dir / "artifacts" / "sha256" / bad["artifact"]["sha256"]
    body = bytearray(stored.read_bytes())
    body[len(body) // 2] ^= 0xFF
    stored.write_bytes(bytes(body))  # the control plane now serves wrong bytes for it
    with new_agent(tmp_path, admin, "tamper") as agent:
        eventually(lambda: admin.converged("tamper", first, agents=1))
        admin.desire("tamper", "wine", bad["version"])

        def refused() -> bool:
            actual = admin.status("tamper")["agents"][0]["models"]["wine"]["actual"]
            return actual["status"] == "failed" and actual["stage"] == "verify"

        eventually(refused)
        assert agent.serving_version("wine", ROWS) == 1
        partial = agent.data_dir / "artifacts" / "partial"
        assert not (agent.data_dir / "artifacts" / "sha256" / bad["artifact"]["sha256"]).exists()
        assert list(partial.iterdir()) == []


def test_control_plane_outage_and_restart_serve_from_the_cache(tmp_path, versions):
    """Stopped control plane: the agent serves on; restarted offline, it serves from its cache;
    with the control plane back, it converges on what changed meanwhile."""
    server = ServerProcess(tmp_path / "cp").start()
    admin = Operator.of(server)
    try:
        admin.environment("outage")
        admin.push("wine", versions[0])
        admin.push("wine", versions[1])
        first = admin.desire("outage", "wine", 1)
        agent = new_agent(tmp_path, admin, "outage").start()
        eventually(lambda: admin.converged("outage", first, agents=1))

        server.stop()
        time.sleep(1.0)  # several failed polls
        assert agent.serving_version("wine", ROWS) == 1
        status = httpx.get(f"{agent.url}/v2/health/ready")
        assert status.status_code == 200

        assert agent.stop() < 5.0
        agent.start()  # no control plane at all: models come from the cache
        eventually(lambda: agent.serving_version("wine", ROWS) == 1, timeout=30)
        assert "restored from the cache" in agent.log()

        server = ServerProcess(server.data_dir, port=server.port).start()
        admin = Operator.of(server)
        second = admin.desire("outage", "wine", 2)
        eventually(lambda: admin.converged("outage", second, agents=1))
        assert agent.serving_version("wine", ROWS) == 2
        agent.stop()
    finally:
        server.stop()


def test_sigterm_during_a_request_finishes_it(shared_server, tmp_path):
    admin = Operator.of(shared_server)
    admin.environment("slow")
    buffer = io.BytesIO()
    joblib.dump(SlowRegressor(), buffer)
    admin.push("slow", buffer.getvalue(), example=[{"x": 1.0, "sleep": 0.0}])
    revision = admin.desire("slow", "slow", 1)
    agent = new_agent(tmp_path, admin, "slow").start()
    eventually(lambda: admin.converged("slow", revision, agents=1))
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(agent.predict("slow", [{"x": 1.0, "sleep": 1.5}]))
    )
    request.start()
    time.sleep(0.5)  # the request is now inside the model
    took = agent.stop(signal.SIGTERM)
    request.join()
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["predictions"] == [1.0]
    assert agent.process.returncode == 0  # type: ignore[union-attr]
    assert took < 5.0
    with pytest.raises(httpx.TransportError):
        agent.predict("slow", [{"x": 1.0, "sleep": 0.0}], timeout=1.0)


def test_twenty_agents_reach_the_new_revision(shared_server, tmp_path, versions):
    """Twenty real agents (each its own daemon, client and cache) in one test process."""
    admin = Operator.of(shared_server)
    admin.environment("fleet")
    admin.push("fleet-model", versions[0])
    admin.push("fleet-model", versions[1])
    admin.desire("fleet", "fleet-model", 1)
    token = admin.enrollment_token("fleet", uses=20)
    daemons = []
    try:
        for number in range(20):
            with ControlPlaneClient(shared_server.url) as client:
                answer = client.enroll(token, EnrollRequest(hostname=f"fleet-{number}"))
            settings = AgentSettings(
                data_dir=tmp_path / f"fleet-{number}",
                poll_interval=0.3,
                follow_poll_hint=False,
                backoff_initial=0.1,
                backoff_max=1.0,
                heartbeat_interval=1.0,
                free_disk_reserve_bytes=0,
            )
            identity = Identity(
                agent_id=answer.agent_id,
                token=answer.token,
                url=shared_server.url,
                environment="fleet",
                hostname=f"fleet-{number}",
                enrolled_at=utcnow(),
            )
            TrustStore(settings.data_dir).save(answer.signing_keys)
            daemon = AgentDaemon(settings, identity=identity, serve=False)
            daemon.start()
            daemons.append(daemon)
        revision = admin.desire("fleet", "fleet-model", 2)
        eventually(lambda: admin.converged("fleet", revision, agents=20), timeout=60)
        assert all(d.slots.get("fleet-model").primary.version == 2 for d in daemons)
    finally:
        for daemon in daemons:
            daemon.stop(timeout=2.0)


def test_run_on_a_busy_port_is_a_clear_error(tmp_path):
    import socket

    from click.testing import CliRunner

    from agent.local.state import StateStore
    from common.cli import cli

    StateStore(tmp_path).save_identity(
        Identity(
            agent_id="agt_x",
            token="t",
            url="http://127.0.0.1:9",
            environment="e",
            hostname="h",
            enrolled_at=utcnow(),
        )
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["agent", "run", "--data-dir", str(tmp_path), "--serve", f"127.0.0.1:{port}"]
        )
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
