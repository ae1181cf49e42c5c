"""Every endpoint x every kind of token, against one real server: who may do what, all asserted.

The rows come in the order they run: each row tries every token, the admin last, so that a
change an admin makes (a promotion, a rollback, an unset) comes after the rows that need the
state before it. A new endpoint without a row fails `test_every_endpoint_has_a_row`.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.signing import describe
from control_plane.api.routing import OPERATIONS
from tests.hostile.conftest import World, seed
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e

ROLES = ("none", "bad", "viewer", "enrollment_a", "agent_a", "agent_b", "admin")


@dataclass(frozen=True)
class Row:
    """One endpoint, the request made with each token, and the status each must get."""

    method: str
    path: str  # the OpenAPI path, as the registry lists it
    url: str  # with {A} for agent A's id
    expected: str  # one status per role, in ROLES order
    body: Any = None
    upload: bool = False

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def report_batch() -> dict:
    end = datetime.now(UTC)
    return {
        "reports": [
            {
                "id": uuid.uuid4().hex,
                "kind": "drift",
                "model": "wine",
                "version": 1,
                "window_start": (end - timedelta(minutes=1)).isoformat(),
                "window_end": end.isoformat(),
                "requests": 0,
                "drift": {"reason": "no traffic"},
            }
        ]
    }


PUBLIC_KEY = describe(Ed25519PrivateKey.generate().public_key()).model_dump()
P = "/api/v1"
#                                                         none bad viewer enrol agA agB admin
ROWS = [
    Row("POST", f"{P}/agents/enroll", f"{P}/agents/enroll",
        "401 401 403 201 403 403 403", {"hostname": "scoped"}),
    Row("GET", f"{P}/agents/{{agent_id}}/manifest", f"{P}/agents/{{A}}/manifest",
        "401 401 403 403 200 403 200"),
    Row("POST", f"{P}/agents/{{agent_id}}/heartbeat", f"{P}/agents/{{A}}/heartbeat",
        "401 401 403 403 200 403 200", {}),
    Row("POST", f"{P}/agents/{{agent_id}}/reports", f"{P}/agents/{{A}}/reports",
        "401 401 403 403 200 403 200", "batch"),
    Row("GET", f"{P}/agents", f"{P}/agents", "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/agents/{{agent_id}}", f"{P}/agents/{{A}}", "401 401 200 403 403 403 200"),
    Row("PUT", f"{P}/environments/{{env}}", f"{P}/environments/scoped",
        "401 401 403 403 403 403 201", {}),
    Row("GET", f"{P}/environments", f"{P}/environments", "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/environments/{{env}}", f"{P}/environments/production",
        "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/environments/{{env}}/desired", f"{P}/environments/production/desired",
        "401 401 200 403 403 403 200"),
    Row("PUT", f"{P}/environments/{{env}}/desired/{{model}}",
        f"{P}/environments/production/desired/wine",
        "401 401 403 403 403 403 200", {"version": 2, "shadow": 1}),
    Row("GET", f"{P}/environments/{{env}}/history", f"{P}/environments/production/history",
        "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/environments/{{env}}/status", f"{P}/environments/production/status",
        "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/environments/{{env}}/drift/{{model}}",
        f"{P}/environments/production/drift/wine", "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/environments/{{env}}/shadow/{{model}}",
        f"{P}/environments/production/shadow/wine", "401 401 200 403 403 403 200"),
    Row("POST", f"{P}/models/{{model}}/versions", f"{P}/models/wine/versions",
        "401 401 403 403 403 403 201", upload=True),
    Row("GET", f"{P}/models", f"{P}/models", "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/models/{{model}}", f"{P}/models/wine", "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/models/{{model}}/versions", f"{P}/models/wine/versions",
        "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/models/{{model}}/versions/{{version}}", f"{P}/models/wine/versions/1",
        "401 401 200 403 403 403 200"),
    Row("PATCH", f"{P}/models/{{model}}/versions/{{version}}", f"{P}/models/wine/versions/1",
        "401 401 403 403 403 403 200", {"description": "scoped"}),
    # Agent B's environment does not want wine: to its agent it does not exist (404, not a 403
    # that would tell it wine v1 exists).
    Row("GET", f"{P}/models/{{model}}/versions/{{version}}/artifact",
        f"{P}/models/wine/versions/1/artifact", "401 401 200 403 200 404 200"),
    # wine v1 has no reference profile: whoever may look is told so.
    Row("GET", f"{P}/models/{{model}}/versions/{{version}}/profile",
        f"{P}/models/wine/versions/1/profile", "401 401 404 403 404 404 404"),
    Row("GET", f"{P}/environments/{{env}}/bundle", f"{P}/environments/production/bundle",
        "401 401 200 403 403 403 200"),
    Row("POST", f"{P}/environments/{{env}}/agents", f"{P}/environments/production/agents",
        "401 401 403 403 403 403 201", {"hostname": "offline", "public_key": PUBLIC_KEY}),
    # Agent A registered no key of its own, so the admin's import conflicts with its record (409).
    Row("POST", f"{P}/reports/import", f"{P}/reports/import", "401 401 403 403 403 403 409",
        "export"),
    Row("PUT", f"{P}/environments/{{env}}/policy", f"{P}/environments/production/policy",
        "401 401 403 403 403 403 200", {}),
    Row("GET", f"{P}/environments/{{env}}/policy", f"{P}/environments/production/policy",
        "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/environments/{{env}}/blocked", f"{P}/environments/production/blocked",
        "401 401 200 403 403 403 200"),
    Row("DELETE", f"{P}/environments/{{env}}/blocked/{{model}}/{{version}}",
        f"{P}/environments/production/blocked/wine/1", "401 401 403 403 403 403 404"),
    Row("GET", f"{P}/reports", f"{P}/reports", "401 401 200 403 403 403 200"),
    Row("GET", f"{P}/events", f"{P}/events", "401 401 200 403 403 403 200"),
    Row("POST", f"{P}/tokens", f"{P}/tokens", "401 401 403 403 403 403 201", {"role": "viewer"}),
    Row("GET", f"{P}/tokens", f"{P}/tokens", "401 401 403 403 403 403 200"),
    # No such token: the admin's revocation is a 404, and no one else's is even looked up.
    Row("DELETE", f"{P}/tokens/{{token_id}}", f"{P}/tokens/tok_unknown",
        "401 401 403 403 403 403 404"),
    Row("GET", "/healthz", "/healthz", "200 200 200 200 200 200 200"),
    Row("GET", "/readyz", "/readyz", "200 200 200 200 200 200 200"),
    # Changes of the desired state last: promote (v2 serves), roll back (v1 again), unset.
    Row("POST", f"{P}/environments/{{env}}/promote/{{model}}",
        f"{P}/environments/production/promote/wine", "401 401 403 403 403 403 200", {}),
    Row("POST", f"{P}/environments/{{env}}/rollback/{{model}}",
        f"{P}/environments/production/rollback/wine", "401 401 403 403 403 403 200", {}),
    Row("DELETE", f"{P}/environments/{{env}}/desired/{{model}}",
        f"{P}/environments/production/desired/wine", "401 401 403 403 403 403 200"),
]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory, wine_model_bytes: bytes) -> Iterator[World]:
    with ServerProcess(tmp_path_factory.mktemp("scopes") / "data") as server:
        world = seed(server, wine_model_bytes)
        with world.http() as http:  # env B wants nothing: its agents may fetch nothing
            assert http.delete("/api/v1/environments/staging/desired/wine").status_code == 200
        yield world


def token_of(world: World, role: str) -> str | None:
    return {
        "none": None,
        "bad": "tether_admin_" + "0" * 40,
        "viewer": world.viewer,
        "enrollment_a": world.enrollment_a,
        "agent_a": world.agent_a,
        "agent_b": world.agent_b,
        "admin": world.admin,
    }[role]


def body_of(row: Row, world: World) -> Any:
    if row.body == "batch":
        return report_batch()
    if row.body == "export":
        return {
            "agent_id": world.agent_a_id,
            "environment": world.env_a,
            "exported_at": datetime.now(UTC).isoformat(),
            "reports": [],
        }
    return row.body


def call(
    http: httpx.Client, row: Row, world: World, token: str | None, artifact: bytes
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = world.url + row.url.replace("{A}", world.agent_a_id)
    if row.upload:
        return http.post(
            url,
            headers=headers,
            files={"artifact": ("model.joblib", io.BytesIO(artifact + uuid.uuid4().bytes))},
            data={"metadata": json.dumps({})},
        )
    return http.request(row.method, url, headers=headers, json=body_of(row, world))


def test_every_endpoint_has_a_row():
    registry = {f"{op.method.upper()} {op.path}" for op in OPERATIONS}
    rows = [row.key for row in ROWS]
    assert len(rows) == len(set(rows)), "one row per endpoint"
    assert set(rows) == registry, {
        "endpoints without a row": sorted(registry - set(rows)),
        "rows of no endpoint": sorted(set(rows) - registry),
    }


def test_every_token_gets_its_status_at_every_endpoint(world: World, wine_model_bytes: bytes):
    wrong: list[str] = []
    http = httpx.Client(timeout=30)
    for row in ROWS:
        expected = dict(zip(ROLES, map(int, row.expected.split()), strict=True))
        for role in ROLES:
            response = call(http, row, world, token_of(world, role), wine_model_bytes)
            if response.status_code != expected[role]:
                wrong.append(
                    f"{row.key} as {role}: {response.status_code}, expected {expected[role]}: "
                    f"{response.text[:200]}"
                )
            elif response.status_code in (401, 403):
                error = response.json()["error"]
                assert set(error) == {"code", "message", "details"}, response.text
                assert error["code"] == ("unauthenticated" if response.status_code == 401
                                         else "forbidden")  # fmt: skip
    http.close()
    assert not wrong, "\n".join(wrong)
