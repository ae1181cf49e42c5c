"""Fixtures for the fault tests: a real control plane, agents enrolled behind a faulty proxy.

Starting a process costs seconds, so one control plane serves every agent test of a worker
(each test in its own environment and with its own model names), and agents are enrolled in
process (the same API call `tether agent enroll` makes) rather than by a second subprocess.
A control plane "down" for an agent is the proxy refusing connections: the server itself stays.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest

from agent.local.state import Identity, StateStore
from agent.local.trust import TrustStore
from agent.sync.client import ControlPlaneClient
from common.clock import utcnow
from common.schemas import EnrollRequest
from tests.support.agent_process import AgentProcess
from tests.support.faulty_proxy import FaultyProxy
from tests.support.models import train_wine
from tests.support.operator import Operator
from tests.support.processes import ServerProcess


def enroll_agent(
    admin: Operator, environment: str, data_dir: Path, *, url: str | None = None, **env_vars: str
) -> AgentProcess:
    """Enroll an agent of `environment` in process and return it (not started), polling `url`."""
    with ControlPlaneClient(admin.url) as client:
        answer = client.enroll(
            admin.enrollment_token(environment), EnrollRequest(hostname=data_dir.name)
        )
    StateStore(data_dir).save_identity(
        Identity(
            agent_id=answer.agent_id,
            token=answer.token,
            url=url or admin.url,
            environment=environment,
            hostname=data_dir.name,
            enrolled_at=utcnow(),
        )
    )
    TrustStore(data_dir).save(answer.signing_keys)
    return AgentProcess(data_dir, env=env_vars)


def model_bytes(c: float, padding: int = 0) -> bytes:
    """A wine classifier as joblib bytes, made `padding` bytes bigger by an unused array."""
    model = train_wine(c=c)
    if padding:
        # Random, so no transport can compress it; the pipeline ignores the attribute.
        model.padding_ = np.random.default_rng(0).integers(0, 255, padding, dtype=np.uint8)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def small_models() -> list[bytes]:
    return [model_bytes(1.0), model_bytes(0.2)]


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("cp") / "data") as server:
        yield server


@pytest.fixture
def admin(shared_server: ServerProcess) -> Iterator[Operator]:
    operator = Operator.of(shared_server)
    yield operator
    operator.close()


@pytest.fixture
def proxy(shared_server: ServerProcess) -> Iterator[FaultyProxy]:
    with FaultyProxy(("127.0.0.1", shared_server.port)) as faulty:
        yield faulty
