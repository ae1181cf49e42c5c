"""A full manifest is built once per revision, keys and TTL, and reused by every agent of it."""

from __future__ import annotations

import threading
from datetime import timedelta

from click.testing import CliRunner

import control_plane.manifest_cache as manifest_cache
from common.cli import cli
from common.schemas import POLL_HINT_HEADER, SignedManifest
from common.signing import PublicKey, verify
from tests.support.api import Api


def fetch(api: Api, agent: dict):
    response = api.get(f"/api/v1/agents/{agent['agent_id']}/manifest", token=agent["token"])
    assert response.status_code == 200, response.get_json()
    return response


def deployed(api: Api, wine_model_bytes: bytes) -> list[dict]:
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes + b"2")
    api.set_desired("production", "wine", 1)
    return [api.enroll("production", f"host-{i}") for i in range(2)]


def test_every_agent_gets_the_same_signed_manifest_and_it_verifies(api: Api, wine_model_bytes):
    first, second = deployed(api, wine_model_bytes)
    one, other = fetch(api, first), fetch(api, second)
    assert one.get_json() == other.get_json()  # the same issued_at and signatures: built once
    signed = SignedManifest.model_validate_json(one.get_data())
    assert signed.poll_after == int(one.headers[POLL_HINT_HEADER])
    trusted = {key["key_id"]: PublicKey(**key) for key in first["signing_keys"]}
    assert verify(signed.signed_document(), signed.signatures, trusted)
    assert (
        one.headers["ETag"]
        == other.headers["ETag"]
        == f'"r1.{signed.manifest.signing_keys[0].key_id[:8]}"'
    )


def test_a_change_a_rotation_or_a_new_ttl_builds_a_new_one(app, api: Api, wine_model_bytes):
    agent, _ = deployed(api, wine_model_bytes)
    before = fetch(api, agent).get_json()
    api.set_desired("production", "wine", 2)
    changed = fetch(api, agent).get_json()
    assert changed["manifest"]["revision"] == 2
    assert changed["manifest"]["models"]["wine"]["primary"]["version"] == 2

    data_dir = str(app.extensions["tether"].settings.data_dir)
    assert CliRunner().invoke(cli, ["key", "rotate", "--data-dir", data_dir]).exit_code == 0
    rotated = fetch(api, agent).get_json()
    assert len(rotated["signatures"]) == len(changed["signatures"]) + 1

    response = api.send("PUT", "/api/v1/environments/production", {"manifest_ttl": 3600})
    assert response.status_code == 200, response.get_json()
    shorter = fetch(api, agent).get_json()["manifest"]
    assert before["manifest"]["revision"] == 1
    lifetime = SignedManifest.model_validate({**rotated, "manifest": shorter}).manifest
    assert lifetime.expires_at - lifetime.issued_at == timedelta(seconds=3600)


def test_an_old_build_is_rebuilt_long_before_it_expires(api: Api, wine_model_bytes, monkeypatch):
    agent, _ = deployed(api, wine_model_bytes)
    first = fetch(api, agent).get_json()["manifest"]
    later = manifest_cache.utcnow() + manifest_cache.MAX_AGE + timedelta(seconds=1)
    monkeypatch.setattr(manifest_cache, "utcnow", lambda: later)
    again = fetch(api, agent).get_json()["manifest"]
    assert again["revision"] == first["revision"] and again["issued_at"] != first["issued_at"]


def test_agents_fetching_at_once_after_a_change_wait_for_one_build(
    app, api: Api, wine_model_bytes, monkeypatch
):
    agents = deployed(api, wine_model_bytes) + [api.enroll("production", f"h{i}") for i in range(8)]
    api.set_desired("production", "wine", 2)
    builds = []
    real_build = manifest_cache.build_manifest

    def counting_build(*args, **kwargs):
        builds.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(manifest_cache, "build_manifest", counting_build)
    bodies: list[bytes] = []

    def fetch_one(agent: dict) -> None:
        client = app.test_client()
        response = client.get(
            f"/api/v1/agents/{agent['agent_id']}/manifest",
            headers={"Authorization": f"Bearer {agent['token']}"},
        )
        bodies.append(response.get_data())

    threads = [threading.Thread(target=fetch_one, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bodies) == len(agents) and len(set(bodies)) == 1
    assert len(builds) == 1
