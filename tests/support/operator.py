"""The operator's side of a control plane, in one helper: push versions, set desired state, watch.

It drives the API over httpx, so the same calls work in process (`Operator.in_process(app,
token)`, through `httpx.WSGITransport`: no socket) and against a real server by URL
(`Operator.of(server)`), as datasette's `DatasetteClient` does for its tests. Every call asserts
its success status and returns the parsed answer; tests that look at a refusal send the request
themselves.
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import joblib

from common.drift import ReferenceProfile
from tests.support.models import wine_frame
from tests.support.processes import ServerProcess

ROWS = wine_frame()[0].iloc[:2].to_dict("records")


def joblib_bytes(estimator: Any) -> bytes:
    """Return `estimator` saved with joblib, as an artifact to push."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


class Operator:
    """Push, deploy and watch convergence with an admin token."""

    def __init__(
        self, http: httpx.Client, *, url: str | None = None, example: list[dict] | None = None
    ) -> None:
        self.http = http
        self.url = url or str(http.base_url).rstrip("/")  # what agents enroll with
        self.example = example  # the input example a push carries unless it says otherwise

    @classmethod
    def in_process(cls, app: Any, token: str) -> Operator:
        """Drive `app` in this process, without a socket."""
        http = httpx.Client(
            transport=httpx.WSGITransport(app=app),
            base_url="http://tether.test",
            headers={"Authorization": f"Bearer {token}"},
        )
        return cls(http)

    @classmethod
    def of(cls, server: ServerProcess) -> Operator:
        """Drive a real `tether server` with its admin token; pushes carry two wine rows."""
        http = httpx.Client(
            base_url=server.url,
            timeout=30,
            headers={"Authorization": f"Bearer {server.admin_token}"},
            # No connection outlives its request: tests drop an Operator (or restart its
            # server) without closing it, and a kept-alive socket would be left open.
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        return cls(http, url=server.url, example=ROWS)

    def close(self) -> None:
        self.http.close()

    def push(
        self,
        model: str,
        artifact: bytes,
        metadata: dict | None = None,
        *,
        example: list[dict] | None = None,
        profile: ReferenceProfile | None = None,
        filename: str = "model.joblib",
    ) -> dict:
        """Register a version of `model`; return it. `example` overrides the default example."""
        metadata = dict(metadata or {})
        if example is not None or (self.example is not None and "input_example" not in metadata):
            metadata["input_example"] = example if example is not None else self.example
        files = {"artifact": (filename, artifact)}
        if profile is not None:
            files["reference_profile"] = ("profile.json", profile.model_dump_json().encode())
        response = self.http.post(
            f"/api/v1/models/{model}/versions",
            files=files,
            data={"metadata": json.dumps(metadata)},
        )
        assert response.status_code == 201, response.text
        return response.json()

    def environment(self, name: str, **fields: Any) -> dict:
        response = self.http.put(f"/api/v1/environments/{name}", json=fields)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def desire(self, environment: str, model: str, version: int, shadow: int | None = None) -> int:
        """Set what `environment` serves of `model`; return the new revision."""
        response = self.http.put(
            f"/api/v1/environments/{environment}/desired/{model}",
            json={"version": version, "shadow": shadow},
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

    def enroll(
        self, environment: str, hostname: str = "host-1", labels: dict[str, str] | None = None
    ) -> dict:
        """Enroll an agent with a fresh enrollment token; return its id, token and hostname."""
        response = self.http.post(
            "/api/v1/agents/enroll",
            json={"hostname": hostname, "labels": labels or {}},
            headers={"Authorization": f"Bearer {self.enrollment_token(environment)}"},
        )
        assert response.status_code == 201, response.text
        return {**response.json(), "hostname": hostname}

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
