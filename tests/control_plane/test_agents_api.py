"""Enrollment, the polled manifest, heartbeats and fleet status."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest

from common.clock import utcnow
from common.signing import BadSignature, PublicKey, Signature, verify
from control_plane.manifests import poll_hint
from control_plane.settings import ControlPlaneSettings
from tests.support.api import Api, assert_error


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes) -> Api:
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes, {"input_example": [{"alcohol": 13.0}]})
    api.operator.push("wine", wine_model_bytes + b"2")
    api.set_desired("production", "wine", 1, 2)
    return api


def manifest_of(api: Api, agent: dict, **headers: str):
    return api.get(f"/api/v1/agents/{agent['agent_id']}/manifest", token=agent["token"], **headers)


def test_manifest_carries_artifacts_and_poll_hint(world: Api, wine_model_bytes: bytes):
    agent = world.enroll("production")
    response = manifest_of(world, agent)
    assert response.status_code == 200
    body = response.get_json()
    manifest = body["manifest"]
    assert (manifest["environment"], manifest["revision"]) == ("production", 1)
    wine = manifest["models"]["wine"]
    assert wine["primary"]["version"] == 1
    assert wine["primary"]["artifact"]["size"] == len(wine_model_bytes)
    assert wine["primary"]["input_example"] == [{"alcohol": 13.0}]
    assert wine["shadow"]["version"] == 2
    trusted = {key["key_id"]: PublicKey(**key) for key in agent["signing_keys"]}
    signatures = [Signature(**item) for item in body["signatures"]]
    assert verify(body["manifest"], signatures, trusted) in trusted
    assert manifest["signing_keys"] == agent["signing_keys"]
    expires = datetime.fromisoformat(manifest["expires_at"])
    issued = datetime.fromisoformat(manifest["issued_at"])
    assert expires - issued == timedelta(days=7)
    tampered = {**manifest, "revision": 99}
    with pytest.raises(BadSignature):
        verify(tampered, signatures, trusted)
    assert int(response.headers["X-Tether-Poll-After"]) == body["poll_after"]
    assert response.headers["ETag"].startswith('"r1.')


def test_conditional_poll_is_304_until_the_revision_changes(world: Api):
    agent = world.enroll("production")
    etag = manifest_of(world, agent).headers["ETag"]
    unchanged = manifest_of(world, agent, **{"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.data == b""
    assert unchanged.headers["X-Tether-Poll-After"].isdigit()
    world.send("POST", "/api/v1/environments/production/promote/wine", {})
    changed = manifest_of(world, agent, **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.get_json()["manifest"]["models"]["wine"]["primary"]["version"] == 2


def test_long_poll_returns_as_soon_as_the_revision_changes(world: Api, app):
    agent = world.enroll("production")
    etag = manifest_of(world, agent).headers["ETag"]
    threading.Timer(
        0.5,
        lambda: Api(app.test_client(), world.token).send(
            "POST", "/api/v1/environments/production/promote/wine", {}
        ),
    ).start()
    started = time.monotonic()
    response = world.get(
        f"/api/v1/agents/{agent['agent_id']}/manifest?wait=10",
        token=agent["token"],
        **{"If-None-Match": etag},
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 0.4 < elapsed < 5
    assert response.get_json()["manifest"]["revision"] == 2


def test_long_poll_times_out_with_304(world: Api):
    agent = world.enroll("production")
    etag = manifest_of(world, agent).headers["ETag"]
    started = time.monotonic()
    response = world.get(
        f"/api/v1/agents/{agent['agent_id']}/manifest?wait=1",
        token=agent["token"],
        **{"If-None-Match": etag},
    )
    assert response.status_code == 304
    assert 0.9 < time.monotonic() - started < 3


def test_bad_long_poll_value_is_422(world: Api):
    agent = world.enroll("production")
    response = world.get(
        f"/api/v1/agents/{agent['agent_id']}/manifest?wait=-1", token=agent["token"]
    )
    assert_error(response, 422, field="query.wait")


@pytest.mark.parametrize(
    ("lagging", "age", "expected"),
    [(3, 10, 5), (0, 10, 30), (0, 7200, 120), (2, 7200, 120)],
)
def test_poll_hint_is_short_while_rolling_out_and_long_when_idle(lagging, age, expected):
    settings = ControlPlaneSettings()
    now = utcnow()
    assert poll_hint(settings, now - timedelta(seconds=age), lagging, now) == expected


def test_heartbeat_updates_status_and_convergence(world: Api):
    agent = world.enroll("production", "edge-1")
    status = world.get("/api/v1/environments/production/status").get_json()
    assert (status["converged"], status["total"]) == (0, 1)
    assert status["agents"][0]["last_seen"] is None
    assert status["agents"][0]["stale"] is True
    beat = {
        "hostname": "edge-1.example",
        "agent_version": "0.1.0",
        "applied_revision": 1,
        "labels": {"site": "lab"},
        "models": {"wine": {"serving": 1, "shadow": 2, "status": "ok"}},
    }
    ack = world.send(
        "POST", f"/api/v1/agents/{agent['agent_id']}/heartbeat", beat, token=agent["token"]
    )
    assert ack.status_code == 200
    assert ack.get_json()["desired_revision"] == 1
    status = world.get("/api/v1/environments/production/status").get_json()
    assert (status["converged"], status["total"]) == (1, 1)
    row = status["agents"][0]
    assert (row["hostname"], row["stale"], row["converged"]) == ("edge-1.example", False, True)
    shown = world.get(f"/api/v1/agents/{agent['agent_id']}").get_json()
    assert shown["labels"] == {"site": "lab"}


def test_failed_model_is_not_converged(world: Api):
    agent = world.enroll("production")
    beat = {
        "applied_revision": 1,
        "models": {
            "wine": {
                "serving": 1,
                "shadow": None,
                "status": "failed",
                "stage": "smoke_test",
                "error": "NaN output",
            }
        },
    }
    world.send("POST", f"/api/v1/agents/{agent['agent_id']}/heartbeat", beat, token=agent["token"])
    status = world.get("/api/v1/environments/production/status").get_json()
    model = status["agents"][0]["models"]["wine"]
    assert model["converged"] is False
    assert model["actual"]["error"] == "NaN output"


def test_poll_hint_shortens_while_agents_lag(world: Api):
    agent = world.enroll("production")
    lagging = manifest_of(world, agent)
    assert lagging.get_json()["poll_after"] == ControlPlaneSettings().rollout_poll_interval
    world.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/heartbeat",
        {"applied_revision": 1},
        token=agent["token"],
    )
    caught_up = manifest_of(world, agent)
    assert caught_up.get_json()["poll_after"] == ControlPlaneSettings().poll_interval


BAD_HEARTBEATS = [
    ({"models": {"wine": {"status": "sleeping"}}}, "models.wine.status"),
    ({"models": {"Bad Name": {}}}, "models"),
    ({"applied_revision": -1}, "applied_revision"),
    ({"models": {"wine": {"serving": "one"}}}, "models.wine.serving"),
    ({"unknown": True}, "unknown"),
]


@pytest.mark.parametrize(("body", "field"), BAD_HEARTBEATS)
def test_bad_heartbeats_are_refused(world: Api, body, field):
    agent = world.enroll("production")
    response = world.send(
        "POST", f"/api/v1/agents/{agent['agent_id']}/heartbeat", body, token=agent["token"]
    )
    assert_error(response, 422, "invalid", field)
    assert world.get(f"/api/v1/agents/{agent['agent_id']}").get_json()["last_seen"] is None


def test_enroll_routes_only_post(world: Api):
    # `/agents/enroll` is not also the agent "enroll": agent ids are `agt_...` in the route.
    options = world.client.options("/api/v1/agents/enroll", headers=world.headers())
    assert set(options.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert_error(world.get("/api/v1/agents/enroll"), 405, "method_not_allowed")
    assert_error(world.get("/api/v1/agents/agt_missing"), 404, "not_found", "agt_missing")
