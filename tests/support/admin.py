"""The operator's side of one real control plane, over HTTP, for end-to-end tests."""

from __future__ import annotations

import json

import httpx

from tests.support.models import wine_frame
from tests.support.processes import ServerProcess

ROWS = wine_frame()[0].iloc[:2].to_dict("records")


class Admin:
    """Push, deploy and watch convergence with the server's admin token."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.url,
            timeout=30,
            headers={"Authorization": f"Bearer {server.admin_token}"},
            # No connection outlives its request: tests drop an Admin (or restart its server)
            # without closing it, and a kept-alive socket would be left open.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def close(self) -> None:
        self.http.close()

    def push(self, model: str, artifact: bytes, example: list[dict] | None = ROWS) -> dict:
        response = self.http.post(
            f"/api/v1/models/{model}/versions",
            files={"artifact": ("m.joblib", artifact)},
            data={"metadata": json.dumps({"input_example": example})},
        )
        assert response.status_code == 201, response.text
        return response.json()

    def environment(self, name: str) -> None:
        response = self.http.put(f"/api/v1/environments/{name}", json={})
        assert response.status_code in (200, 201), response.text

    def desire(self, environment: str, model: str, version: int) -> int:
        response = self.http.put(
            f"/api/v1/environments/{environment}/desired/{model}", json={"version": version}
        )
        assert response.status_code == 200, response.text
        return response.json()["revision"]

    def revision(self, environment: str) -> int:
        return self.http.get(f"/api/v1/environments/{environment}/desired").json()["revision"]

    def enrollment_token(self, environment: str, uses: int | None = None) -> str:
        response = self.http.post(
            "/api/v1/tokens",
            json={"role": "enrollment", "environment": environment, "max_uses": uses},
        )
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def status(self, environment: str) -> dict:
        return self.http.get(f"/api/v1/environments/{environment}/status").json()

    def actual(self, environment: str, model: str) -> dict:
        """Return the one agent's reported actual state of `model` in `environment`."""
        agent = self.status(environment)["agents"][0]
        return agent["models"].get(model, {}).get("actual") or {}

    def converged(self, environment: str, revision: int, agents: int | None = None) -> bool:
        """Tell whether every agent (exactly `agents` of them, if given) applied `revision`."""
        status = self.status(environment)
        expected = status["total"] >= 1 if agents is None else status["total"] == agents
        return (
            expected
            and status["revision"] == revision
            and status["converged"] == status["total"]
            and all(agent["applied_revision"] == revision for agent in status["agents"])
        )
