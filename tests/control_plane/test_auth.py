"""Tokens: 401 without a valid one, 403 outside its scope, hashes only at rest."""

from __future__ import annotations

import json

import pytest

from tests.support.api import Api, assert_error
from tests.support.store import change_rows, every_row


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes) -> Api:
    api.create_env("production")
    api.create_env("staging")
    api.operator.push("wine", wine_model_bytes)
    api.set_desired("production", "wine", 1)
    return api


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer tether_admin_wrong", "bearer nope"],
)
def test_missing_or_bad_token_is_401(world: Api, header):
    headers = {} if header is None else {"Authorization": header}
    response = world.client.get("/api/v1/models", headers=headers)
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_viewer_reads_but_cannot_write(world: Api, wine_model_bytes: bytes):
    viewer = world.create_token("viewer")
    assert world.get("/api/v1/models", token=viewer).status_code == 200
    assert world.get("/api/v1/environments/production/status", token=viewer).status_code == 200
    write = world.send(
        "PUT", "/api/v1/environments/production/desired/wine", {"version": 1}, token=viewer
    )
    assert_error(write, 403, "forbidden")
    assert_error(world.push("wine", wine_model_bytes, token=viewer), 403)
    assert_error(world.send("POST", "/api/v1/tokens", {"role": "admin"}, token=viewer), 403)
    assert_error(world.send("PUT", "/api/v1/environments/x", {}, token=viewer), 403)
    assert (
        world.get("/api/v1/models/wine/versions", token=viewer).get_json()["versions"][0]["version"]
        == 1
    )


def test_agent_token_reads_only_its_own_manifest(world: Api):
    first = world.enroll("production", "host-a")
    second = world.enroll("production", "host-b")
    own = world.get(f"/api/v1/agents/{first['agent_id']}/manifest", token=first["token"])
    assert own.status_code == 200
    other = world.get(f"/api/v1/agents/{second['agent_id']}/manifest", token=first["token"])
    assert_error(other, 403, "forbidden")
    beat = world.send(
        "POST", f"/api/v1/agents/{second['agent_id']}/heartbeat", {}, token=first["token"]
    )
    assert_error(beat, 403)
    assert_error(world.get("/api/v1/models", token=first["token"]), 403)
    assert_error(world.get("/api/v1/agents", token=first["token"]), 403)


def test_agent_downloads_only_what_its_environment_wants(world: Api, wine_model_bytes: bytes):
    world.operator.push("wine", wine_model_bytes + b"v2")
    agent = world.enroll("production")
    assert (
        world.get("/api/v1/models/wine/versions/1/artifact", token=agent["token"]).status_code
        == 200
    )
    # Not wanted is not found, to an agent: a 403 would say the version exists.
    hidden = world.get("/api/v1/models/wine/versions/2/artifact", token=agent["token"])
    assert_error(hidden, 404, "not_found")
    staging_agent = world.enroll("staging")
    assert_error(
        world.get("/api/v1/models/wine/versions/1/artifact", token=staging_agent["token"]),
        404,
        "not_found",
    )


def test_enrollment_token_only_enrolls(world: Api):
    enrollment = world.create_token("enrollment", environment="production")
    assert_error(world.get("/api/v1/models", token=enrollment), 403)
    assert_error(world.get("/api/v1/environments/production/desired", token=enrollment), 403)
    response = world.send("POST", "/api/v1/agents/enroll", {"hostname": "h"}, token=enrollment)
    assert response.status_code == 201
    assert response.get_json()["environment"] == "production"


def test_enrollment_token_use_count_is_spent(world: Api):
    enrollment = world.create_token("enrollment", environment="production", max_uses=2)
    for _ in range(2):
        assert (
            world.send(
                "POST", "/api/v1/agents/enroll", {"hostname": "h"}, token=enrollment
            ).status_code
            == 201
        )
    third = world.send("POST", "/api/v1/agents/enroll", {"hostname": "h"}, token=enrollment)
    assert_error(third, 401)
    assert len(world.get("/api/v1/agents").get_json()["agents"]) == 2


def test_expired_token_is_refused(world: Api, app):
    viewer = world.create_token("viewer", expires_in=60)
    change_rows(
        app, "UPDATE tokens SET expires_at = '2000-01-01T00:00:00+00:00' WHERE role = 'viewer'"
    )
    assert_error(world.get("/api/v1/models", token=viewer), 401)


def test_tokens_are_stored_only_as_hashes(world: Api, app):
    secret = world.create_token("viewer")
    dump = every_row(app)
    assert secret not in dump
    listing = world.get("/api/v1/tokens").get_data(as_text=True)
    assert secret not in listing


def test_enroll_with_an_empty_hostname_is_refused(world: Api):
    bad = world.send(
        "POST",
        "/api/v1/agents/enroll",
        {"hostname": ""},
        token=world.create_token("enrollment", environment="production"),
    )
    assert_error(bad, 422, field="hostname")


def _token_id(world: Api, **match: str) -> str:
    tokens = world.get("/api/v1/tokens").get_json()["tokens"]
    return next(t["id"] for t in tokens if all(t[key] == value for key, value in match.items()))


def test_a_revoked_token_stops_working_at_once(world: Api):
    viewer = world.create_token("viewer", description="grafana")
    token_id = _token_id(world, description="grafana")
    revoked = world.send("DELETE", f"/api/v1/tokens/{token_id}")
    assert revoked.status_code == 200
    assert (revoked.get_json()["id"], revoked.get_json()["role"]) == (token_id, "viewer")
    assert "token" not in revoked.get_json()  # the secret is never shown again
    assert_error(world.get("/api/v1/models", token=viewer), 401)
    assert token_id not in {t["id"] for t in world.get("/api/v1/tokens").get_json()["tokens"]}
    again = world.send("DELETE", f"/api/v1/tokens/{token_id}")
    assert_error(again, 404)


def test_a_revoked_agent_token_cannot_poll_even_with_a_current_etag(world: Api):
    agent = world.enroll("production")
    path = f"/api/v1/agents/{agent['agent_id']}/manifest"
    etag = world.get(path, token=agent["token"]).headers["ETag"]
    assert world.get(path, token=agent["token"], **{"If-None-Match": etag}).status_code == 304
    token_id = _token_id(world, agent_id=agent["agent_id"])
    assert world.send("DELETE", f"/api/v1/tokens/{token_id}").status_code == 200
    assert_error(world.get(path, token=agent["token"], **{"If-None-Match": etag}), 401)


def test_the_last_working_admin_token_cannot_be_revoked(world: Api, app):
    first = _token_id(world, role="admin")
    refused = world.send("DELETE", f"/api/v1/tokens/{first}")
    assert "last working admin token" in assert_error(refused, 409)["message"]
    assert world.get("/api/v1/models").status_code == 200
    # An expired second admin does not count: it could not sign anyone back in.
    world.create_token("admin", expires_in=60, description="expiring")
    change_rows(
        app, "UPDATE tokens SET expires_at = '2000-01-01T00:00:00+00:00' WHERE id != ?", [first]
    )
    assert_error(world.send("DELETE", f"/api/v1/tokens/{first}"), 409)
    second = world.create_token("admin", description="second")
    assert world.send("DELETE", f"/api/v1/tokens/{first}").status_code == 200
    assert world.get("/api/v1/models", token=second).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "enrollment", "agent"])
def test_only_admins_revoke_tokens(world: Api, role):
    secret = {
        "viewer": lambda: world.create_token("viewer"),
        "enrollment": lambda: world.create_token("enrollment", environment="production"),
        "agent": lambda: world.enroll("production")["token"],
    }[role]()
    target = _token_id(world, role="admin")
    assert_error(world.send("DELETE", f"/api/v1/tokens/{target}", token=secret), 403)
    assert target in {t["id"] for t in world.get("/api/v1/tokens").get_json()["tokens"]}


@pytest.mark.parametrize("kind", ["artifact", "profile"])
def test_an_agent_cannot_tell_what_exists_outside_its_environment(world: Api, kind: str):
    # staging wants nothing: to its agent, wine v1 (which exists) looks like ghost v1 (which
    # does not), and production's agent sees wine v2 (not wanted) as it sees wine v9.
    world.operator.push("wine", b"not wanted" * 10)
    staging, production = world.enroll("staging"), world.enroll("production")

    def answer(agent: dict, model: str, version: int) -> tuple[int, dict]:
        response = world.get(
            f"/api/v1/models/{model}/versions/{version}/{kind}", token=agent["token"]
        )
        body = json.dumps(response.get_json()).replace(f"'{model}'", "'M'")
        return response.status_code, json.loads(body.replace(f"version {version} ", "version N "))

    assert answer(staging, "wine", 1) == answer(staging, "ghost", 1)
    assert answer(production, "wine", 2) == answer(production, "wine", 9)
    assert answer(staging, "wine", 1)[0] == answer(production, "wine", 2)[0] == 404
