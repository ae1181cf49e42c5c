"""No secret in any log line, error body or /metrics, after a full end-to-end run.

A real control plane and a real agent, both logging at debug level: enrollment, manifest,
artifact download, load, serving, heartbeats, reports, and requests that fail with every kind of
token. Then every token and private key is looked for in everything either side wrote or
answered.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.hostile.conftest import World, seed
from tests.support.agent_process import AgentProcess, eventually
from tests.support.models import wine_frame
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e

DEBUG = {"TETHER_LOG_LEVEL": "debug"}


def pem_bodies(folder: Path) -> list[str]:
    """The base64 lines of every PEM private key under `folder`."""
    found = []
    for path in folder.rglob("*.pem"):
        lines = path.read_text().splitlines()
        found += [line for line in lines if line and not line.startswith("-----")]
    return found


def failing_requests(world: World, agent_id: str) -> list[httpx.Response]:
    """Requests refused every way a token can be wrong, each carrying a secret somewhere."""
    url = world.url
    answers = []
    with httpx.Client(base_url=url, timeout=30) as http:

        def send(method: str, path: str, token: str, **kwargs) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            answers.append(http.request(method, path, headers=headers, **kwargs))

        send("GET", "/api/v1/models", world.admin + "x")  # 401: a token one byte off
        send("GET", "/api/v1/models", world.agent_a)  # 403: an agent reading the registry
        send("POST", "/api/v1/tokens", world.viewer, json={"role": "admin"})  # 403
        send("POST", f"/api/v1/agents/{agent_id}/heartbeat", world.agent_b, json={})  # 403
        send(  # 422: a secret as an invalid value
            "POST",
            "/api/v1/agents/enroll",
            world.enrollment_a,
            json={"hostname": "", "labels": {"k": world.admin * 10}},
        )
        send("GET", f"/api/v1/reports?environment={world.viewer}&bogus=1", world.admin)  # 422
    for answer in answers:
        assert answer.status_code in (401, 403, 422), answer.text
    return answers


def test_no_secret_in_logs_error_bodies_or_metrics(tmp_path: Path, wine_model_bytes: bytes):
    data_dir = tmp_path / "control-plane"
    # The first start prints the new admin token once, by design; the run is the second start.
    ServerProcess(data_dir).start().stop()
    with ServerProcess(data_dir, env=DEBUG) as server:
        world = seed(server, wine_model_bytes)
        with world.http() as http:
            created = http.post(
                "/api/v1/tokens", json={"role": "enrollment", "environment": "production"}
            )
            enrollment = created.json()["token"]
        agent = AgentProcess(tmp_path / "agent", env=DEBUG)
        agent_id = agent.enroll(server.url, "production", enrollment)
        rows = wine_frame()[0].head(3).to_dict(orient="records")
        with agent:
            eventually(lambda: agent.serving_version("wine", rows) == 1, timeout=60)
            for _ in range(5):
                assert agent.predict("wine", rows).status_code == 200
            answers = failing_requests(world, agent_id)
            with world.http() as http:
                eventually(
                    lambda: http.get(f"/api/v1/agents/{agent_id}").json()["last_seen"], timeout=30
                )
                metrics = http.get("/metrics").text
        agent_token = (tmp_path / "agent" / "identity.json").read_text()
        server_log = server.log()
    secrets = {
        "admin token": world.admin,
        "viewer token": world.viewer,
        "enrollment token": world.enrollment_a,
        "enrollment token of the agent process": enrollment,
        "agent A token": world.agent_a,
        "agent B token": world.agent_b,
        "agent process token": json.loads(agent_token)["token"],
    }
    for index, line in enumerate(pem_bodies(data_dir) + pem_bodies(tmp_path / "agent")):
        secrets[f"private key line {index}"] = line
    assert any(name.startswith("private key") for name in secrets), "no key found to look for"
    places = {
        "server log": server_log,
        "agent log": agent.log(),
        "/metrics": metrics,
        **{f"error body {i}": answer.text for i, answer in enumerate(answers)},
    }
    # The run did happen and was logged: otherwise finding nothing would prove nothing.
    assert "GET /api/v1/agents/" in agent.log() and "manifest" in agent.log()
    assert "tether_http_requests" in metrics or "tether_" in metrics
    leaks = [
        f"{name} in {place}"
        for name, secret in secrets.items()
        for place, text in places.items()
        if secret in text
    ]
    assert not leaks, leaks
