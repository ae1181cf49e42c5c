"""A real control plane with a small world in it: two environments, a model, agents, tokens."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import httpx

from tests.support.processes import ServerProcess


@dataclass(frozen=True)
class World:
    """What the hostile tests aim at: names that exist, and one token of every role."""

    url: str
    admin: str
    viewer: str
    enrollment_a: str  # enrollment into env A
    agent_a: str  # agent A's token, and its id
    agent_a_id: str
    agent_b: str  # an agent of env B
    agent_b_id: str
    env_a: str = "production"
    env_b: str = "staging"
    model: str = "wine"

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def seed(server: ServerProcess, artifact: bytes) -> World:
    """Create env A and B, wine v1 and v2 (v1 desired in A with v2 in shadow), agents, tokens."""
    admin = server.admin_token
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    ) as http:
        for env in ("production", "staging"):
            assert http.put(f"/api/v1/environments/{env}", json={}).status_code in (200, 201)
        for extra in (b"", b"v2"):
            pushed = http.post(
                "/api/v1/models/wine/versions",
                files={"artifact": ("model.joblib", io.BytesIO(artifact + extra))},
                data={"metadata": json.dumps({"description": "hostile"})},
            )
            assert pushed.status_code == 201, pushed.text
        for env in ("production", "staging"):
            desired = http.put(
                f"/api/v1/environments/{env}/desired/wine", json={"version": 1, "shadow": 2}
            )
            assert desired.status_code == 200, desired.text

        def token(role: str, **fields: object) -> str:
            created = http.post("/api/v1/tokens", json={"role": role, **fields})
            assert created.status_code == 201, created.text
            return created.json()["token"]

        def enroll(env: str) -> dict:
            enrollment = token("enrollment", environment=env)
            answer = http.post(
                "/api/v1/agents/enroll",
                json={"hostname": f"host-{env}"},
                headers={"Authorization": f"Bearer {enrollment}"},
            )
            assert answer.status_code == 201, answer.text
            return answer.json()

        agent_a, agent_b = enroll("production"), enroll("staging")
        return World(
            url=server.url,
            admin=admin,
            viewer=token("viewer"),
            enrollment_a=token("enrollment", environment="production"),
            agent_a=agent_a["token"],
            agent_a_id=agent_a["agent_id"],
            agent_b=agent_b["token"],
            agent_b_id=agent_b["agent_id"],
        )
