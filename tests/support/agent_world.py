"""Agent fixtures for every suite: the real API in process (no socket), enrolled agents, models.

Registered once, with `pytest_plugins` in tests/conftest.py, so the agent's suites and the
reliability suite share them without importing them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest

from agent.daemon import AgentDaemon
from agent.local.state import Identity
from agent.local.trust import TrustStore
from agent.settings import AgentSettings
from common.clock import utcnow
from common.signing import PublicKey
from tests.support.api import Api
from tests.support.models import train_wine, wine_frame

URL = "http://tether.test"
ENV = "production"


@pytest.fixture(scope="session")
def wine_v2_bytes() -> bytes:
    """A second wine classifier, different bytes from `wine_model_bytes`."""
    buffer = io.BytesIO()
    joblib.dump(train_wine(c=0.3), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def wine_example() -> list[dict]:
    return wine_frame()[0].iloc[:3].to_dict("records")


@pytest.fixture
def transport(app) -> httpx.WSGITransport:
    """The real control plane, in process: the agent's requests never touch a socket."""
    return httpx.WSGITransport(app=app)


@pytest.fixture
def env(api: Api) -> str:
    api.create_env(ENV)
    return ENV


@pytest.fixture
def enrolled(api: Api, env: str) -> dict:
    return api.enroll(env, hostname="serving-1")


def identity_of(enrolled: dict, url: str = URL) -> Identity:
    return Identity(
        agent_id=enrolled["agent_id"],
        token=enrolled["token"],
        url=url,
        environment=enrolled["environment"],
        hostname="serving-1",
        enrolled_at=utcnow(),
    )


def fast_settings(data_dir: Path, **overrides: Any) -> AgentSettings:
    """Settings for tests: no waiting between retries, a small chunk size."""
    values = {
        "data_dir": data_dir,
        "serve": "127.0.0.1:0",
        "poll_interval": 0.05,
        "backoff_initial": 0.001,
        "backoff_max": 0.01,
        "heartbeat_interval": 3600,
        "free_disk_reserve_bytes": 0,
        "download_chunk_bytes": 64 * 1024,
        **overrides,
    }
    return AgentSettings(**values)


@pytest.fixture
def make_agent(tmp_path: Path, enrolled: dict, transport) -> Iterator[Callable[..., AgentDaemon]]:
    """Build daemons (not started, no inference server) over the in-process API by default."""
    made: list[AgentDaemon] = []

    def make(
        transport_: httpx.BaseTransport | None = None, data_dir: Path | None = None, **settings: Any
    ) -> AgentDaemon:
        directory = data_dir or tmp_path / "agent"
        trust = TrustStore(directory)
        if not trust.load():  # as enrollment leaves it: the control plane's keys trusted
            trust.save([PublicKey(**key) for key in enrolled["signing_keys"]])
        daemon = AgentDaemon(
            fast_settings(directory, **settings),
            identity=identity_of(enrolled),
            transport=transport_ or transport,
            serve=False,
        )
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.client.close()


@pytest.fixture
def push(api: Api, wine_example: list[dict]) -> Callable[..., dict]:
    """Register a version of `wine` (or another model) with the wine example as smoke test."""

    def push_wine(artifact: bytes, model: str = "wine", **metadata: Any) -> dict:
        return api.operator.push(model, artifact, {"input_example": wine_example, **metadata})

    return push_wine


def desire(api: Api, model: str, version: int, shadow: int | None = None, env: str = ENV) -> int:
    """Set the desired state and return the new revision."""
    response = api.set_desired(env, model, version, shadow)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["revision"]


@pytest.fixture
def serving(api, make_agent, push, wine_model_bytes, wine_v2_bytes):
    """An agent serving wine v1, with v2 registered (not yet desired)."""
    push(wine_model_bytes)
    push(wine_v2_bytes)
    desire(api, "wine", 1)
    agent = make_agent()
    agent.poller.poll_once()
    assert served(agent) == {"wine": 1}
    return agent


def served(agent) -> dict[str, int]:
    return {name: d.primary.version for name, d in agent.slots.snapshot().items()}
