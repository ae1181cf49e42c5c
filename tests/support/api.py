"""Actions the API tests repeat, over Flask's test client."""

from __future__ import annotations

import io
import json
from typing import Any

from tests.support.operator import Operator


def assert_error(
    response: Any, status: int, code: str | None = None, field: str | None = None
) -> dict:
    """Assert the one JSON error shape, its status and, optionally, its code and a named field."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if field is not None:
        text = json.dumps(body["error"])
        assert field in text, f"{field!r} not named in {text}"
    return body["error"]


class Api:
    """Send raw requests through Flask's test client, to look at answers, refusals included.

    For the operator's actions that must succeed (push a version, set the desired state), use
    `api.operator`: the one operator helper, here over the same app in process.
    """

    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.token = token
        self.operator = Operator.in_process(client.application, token)

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", **extra}

    def get(self, path: str, token: str | None = None, **headers: str):
        return _read(self.client.get(path, headers=self.headers(token, **headers)))

    def send(
        self, method: str, path: str, body: Any = None, token: str | None = None, **headers: str
    ):
        return _read(
            self.client.open(path, method=method, json=body, headers=self.headers(token, **headers))
        )

    def create_env(self, name: str = "production") -> dict:
        response = self.send("PUT", f"/api/v1/environments/{name}", {})
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()

    def push(
        self, model: str, artifact: bytes, metadata: dict | None = None, token: str | None = None
    ):
        return self.client.post(
            f"/api/v1/models/{model}/versions",
            data={
                "artifact": (io.BytesIO(artifact), "model.joblib"),
                "metadata": json.dumps(metadata or {}),
            },
            headers=self.headers(token),
            content_type="multipart/form-data",
        )

    def set_desired(
        self, env: str, model: str, version: int, shadow: int | None = None, **headers: str
    ):
        return self.send(
            "PUT",
            f"/api/v1/environments/{env}/desired/{model}",
            {"version": version, "shadow": shadow},
            **headers,
        )

    def create_token(self, role: str, **fields: Any) -> str:
        response = self.send("POST", "/api/v1/tokens", {"role": role, **fields})
        assert response.status_code == 201, response.get_json()
        return response.get_json()["token"]

    def enroll(self, env: str, hostname: str = "host-1") -> dict:
        enrollment = self.create_token("enrollment", environment=env)
        response = self.send(
            "POST", "/api/v1/agents/enroll", {"hostname": hostname}, token=enrollment
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()


def _read(response: Any) -> Any:
    """Read the whole body and close the response, so streamed files are not left open."""
    response.get_data()
    response.close()
    return response
