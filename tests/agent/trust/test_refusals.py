"""Each manifest or artifact an agent must refuse: refused, the old model serves, the reason shows.

An agent serves wine v1; then the "control plane" (the real app behind a transport that swaps
in what the attacker sends) offers something it must refuse. After each, v1 still predicts,
`state.json` (what `tether agent status` shows) and the heartbeat the control plane received
say why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.sync.reconciler import ManifestRefused
from common.schemas import Manifest, SignedManifest
from common.signing import sign
from tests.agent.fakes import ArtifactServer
from tests.support.agent_world import desire, served


def signing_keys(app):
    return app.extensions["tether"].keys.current()


def genuine(api, agent) -> dict[str, Any]:
    """The manifest the control plane signs for this agent right now, as JSON."""
    identity = agent.identity
    response = api.get(f"/api/v1/agents/{identity.agent_id}/manifest", token=identity.token)
    assert response.status_code == 200
    return response.get_json()


def resign(app, body: dict[str, Any]) -> dict[str, Any]:
    """Sign a changed manifest with the control plane's own keys (a compromised server)."""
    keys = signing_keys(app)
    # What is signed is the manifest as the schema writes it (canonical JSON of model_dump).
    body["manifest"] = Manifest.model_validate(body["manifest"]).model_dump(mode="json")
    body["signatures"] = [s.model_dump() for s in keys.sign(body["manifest"])]
    return body


def offering(
    transport, manifest: dict[str, Any] | None = None, artifact: ArtifactServer | None = None
) -> httpx.MockTransport:
    """The real control plane, except for the manifest and/or artifacts an attacker sends."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if manifest is not None and path.endswith("/manifest"):
            return httpx.Response(200, json=manifest, headers={"ETag": '"r99"'})
        if artifact is not None and (
            path.endswith("/artifact") or request.url.host != "tether.test"
        ):
            return artifact(request)
        return transport.handle_request(request)

    return httpx.MockTransport(handle)


def attacked(make_agent, serving, transport, **offer: Any):
    """Restart the agent on its data dir against the attacker; poll once."""
    agent = make_agent(offering(transport, **offer), data_dir=serving.settings.data_dir)
    agent.reconciler.restore()
    agent.poller.poll_once()
    return agent


def assert_refused_and_serving(api, agent, wine_example, reason: str, stage: str = "manifest"):
    assert served(agent) == {"wine": 1}
    assert len(agent.slots.get("wine").primary.predict(wine_example).predictions) == 3
    state = agent.store.load()
    assert reason in (state.last_error or ""), state.last_error
    actual = state.actual["wine"]
    assert (actual.serving, actual.status, actual.stage) == (1, "failed", stage)
    assert reason in actual.error
    # The heartbeat carried it to the control plane.
    assert agent.poller.heartbeat()
    shown = api.get(f"/api/v1/agents/{agent.identity.agent_id}").get_json()["models"]["wine"]
    assert (shown["serving"], shown["status"], shown["stage"]) == (1, "failed", stage)
    assert reason in shown["error"]


def newer(api, agent) -> dict[str, Any]:
    """A genuine manifest for v2 (a revision the agent has not seen)."""
    desire(api, "wine", 2)
    return genuine(api, agent)


def test_a_tampered_manifest_is_refused(api, serving, make_agent, transport, wine_example):
    body = newer(api, serving)
    body["manifest"]["models"]["wine"]["primary"]["artifact"]["size"] += 1
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert_refused_and_serving(api, agent, wine_example, "no signature verifies")


def test_an_unsigned_manifest_is_refused(api, serving, make_agent, transport, wine_example):
    body = newer(api, serving)
    body["signatures"] = []
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert_refused_and_serving(api, agent, wine_example, "not signed")


def test_a_manifest_signed_by_an_untrusted_key_is_refused(
    api, serving, make_agent, transport, wine_example
):
    body = newer(api, serving)
    stranger = Ed25519PrivateKey.generate()
    body["signatures"] = [sign(stranger, body["manifest"]).model_dump()]
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert_refused_and_serving(api, agent, wine_example, "untrusted key")
    # Nor does a stranger's key listed in the manifest become trusted.
    assert len(json.loads((agent.settings.data_dir / "trust.json").read_text())["keys"]) == 1


def test_another_environments_manifest_is_refused(
    app, api, serving, make_agent, transport, wine_example
):
    api.create_env("staging")
    desire(api, "wine", 2, env="staging")
    other = api.enroll("staging")
    body = api.get(f"/api/v1/agents/{other['agent_id']}/manifest", token=other["token"]).get_json()
    assert body["manifest"]["environment"] == "staging"  # genuinely signed, for staging
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert_refused_and_serving(api, agent, wine_example, "'staging'")


def test_an_older_revision_is_refused_even_after_a_restart(
    api, serving, make_agent, transport, wine_example
):
    old = genuine(api, serving)  # revision of v1, genuinely signed
    desire(api, "wine", 2)
    serving.poller.poll_once()
    assert served(serving) == {"wine": 2}
    desire(api, "wine", 1)
    serving.poller.poll_once()
    accepted = serving.store.load().accepted_revision
    assert accepted == old["manifest"]["revision"] + 2
    # A restart (a new process on the same data dir) remembers the floor.
    agent = attacked(make_agent, serving, transport, manifest=old)
    assert agent.store.load().accepted_revision == accepted
    assert_refused_and_serving(api, agent, wine_example, "older than revision")
    with pytest.raises(ManifestRefused, match="older than revision"):
        agent.reconciler.accept(SignedManifest.model_validate(old), None)


def expiring(app, api, serving, seconds_ago: float) -> dict[str, Any]:
    """A v2 manifest, signed by the control plane, that expired `seconds_ago` seconds ago."""
    body = newer(api, serving)
    now = datetime.now(UTC)
    body["manifest"]["issued_at"] = (now - timedelta(days=7)).isoformat()
    body["manifest"]["expires_at"] = (now - timedelta(seconds=seconds_ago)).isoformat()
    return resign(app, body)


def test_an_expired_manifest_is_refused(app, api, serving, make_agent, transport, wine_example):
    body = expiring(app, api, serving, seconds_ago=3600)
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert_refused_and_serving(api, agent, wine_example, "expired at")


def test_clock_skew_within_the_tolerance_is_accepted(app, api, serving, make_agent, transport):
    body = expiring(app, api, serving, seconds_ago=60)  # default tolerance: 300 s
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert served(agent) == {"wine": 2}
    assert agent.store.load().actual["wine"].status == "ok"


def test_clock_skew_beyond_a_stricter_tolerance_is_refused(
    app, api, serving, make_agent, transport, wine_example
):
    body = expiring(app, api, serving, seconds_ago=60)
    agent = make_agent(
        offering(transport, manifest=body), data_dir=serving.settings.data_dir, clock_skew=30
    )
    agent.reconciler.restore()
    agent.poller.poll_once()
    assert_refused_and_serving(api, agent, wine_example, "30 s of skew allowed")


def test_an_oversized_artifact_is_cut_at_its_declared_size_and_refused(
    api, serving, make_agent, transport, wine_example, wine_v2_bytes
):
    desire(api, "wine", 2)
    # A different, larger file behind v2's URL: the agent reads v2's declared size, no more.
    server = ArtifactServer(b"X" + wine_v2_bytes[1:], extra=b"Z" * 3_000_000)
    agent = attacked(make_agent, serving, transport, artifact=server)
    assert sum(server.sent()) < len(wine_v2_bytes) + 3_000_000
    assert_refused_and_serving(api, agent, wine_example, "expected", stage="verify")
    assert list(agent.cache.partial.iterdir()) == []


def test_an_artifact_with_the_wrong_digest_is_refused(
    api, serving, make_agent, transport, wine_example, wine_v2_bytes
):
    desire(api, "wine", 2)
    server = ArtifactServer(bytes(reversed(wine_v2_bytes)))  # same size, other bytes
    agent = attacked(make_agent, serving, transport, artifact=server)
    assert_refused_and_serving(api, agent, wine_example, "sha256", stage="verify")
    digest = api.get("/api/v1/models/wine/versions/2").get_json()["artifact"]["sha256"]
    assert not agent.cache.path(digest).exists()


def test_a_good_manifest_after_a_refusal_clears_the_failure(
    api, serving, make_agent, transport, wine_example
):
    body = newer(api, serving)
    body["signatures"] = []
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert agent.store.load().actual["wine"].stage == "manifest"
    # The attacker is gone: the next poll asks for a full manifest (no 304) and converges.
    healed = make_agent(data_dir=serving.settings.data_dir)
    healed.reconciler.restore()
    healed.poller.poll_once()
    assert served(healed) == {"wine": 2}
    assert healed.store.load().actual["wine"].status == "ok"


def test_a_manifest_past_half_its_life_is_fetched_afresh(api, serving, make_agent, transport):
    """A 304 would leave the agent holding a manifest that expires; it asks for a new one."""
    seen: list[str | None] = []

    def record(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/manifest"):
            seen.append(request.headers.get("If-None-Match"))
        return transport.handle_request(request)

    agent = make_agent(httpx.MockTransport(record), data_dir=serving.settings.data_dir)
    agent.poller.poll_once()
    assert seen[-1] is not None  # fresh: a conditional poll
    with agent.store.edit() as state:
        manifest = state.manifest
        assert manifest is not None
        manifest.issued_at -= timedelta(days=4)  # past half of its 7 days
        manifest.expires_at -= timedelta(days=4)
    agent.poller.poll_once()
    assert seen[-1] is None
    assert agent.store.load().manifest.issued_at > manifest.issued_at  # type: ignore[union-attr]


# A newer control plane may add manifest fields this agent does not know. The signatures cover
# the manifest as it arrived, not this agent's rendering of it: unknown fields are checked with
# the rest, then ignored. A field slipped in after signing is refused like any other tampering.


def with_future_fields(body: dict[str, Any]) -> dict[str, Any]:
    body["manifest"]["rollout"] = {"strategy": "waves", "wave": 2}
    body["manifest"]["models"]["wine"]["primary"]["warmup_requests"] = 50
    return body


def test_a_newer_manifest_with_unknown_fields_verifies_and_applies(
    app, api, serving, make_agent, transport, wine_example
):
    body = with_future_fields(newer(api, serving))
    body["signatures"] = [s.model_dump() for s in signing_keys(app).sign(body["manifest"])]
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert served(agent) == {"wine": 2}
    assert len(agent.slots.get("wine").primary.predict(wine_example).predictions) == 3
    assert agent.store.load().last_error is None


def test_a_field_added_after_signing_is_refused(api, serving, make_agent, transport, wine_example):
    body = with_future_fields(newer(api, serving))  # signed before the fields were added
    agent = attacked(make_agent, serving, transport, manifest=body)
    assert_refused_and_serving(api, agent, wine_example, "no signature verifies")


def test_a_mirror_serving_wrong_bytes_behind_a_presigned_redirect_is_refused(
    api, serving, make_agent, transport, wine_example, wine_v2_bytes
):
    # The control plane sends the agent to an artifact store (as with S3 presigning), and the
    # store, or whoever answers at its address, serves other bytes: the digest in the signed
    # manifest refuses them, exactly as it refuses them from the control plane itself.
    desire(api, "wine", 2)
    mirror = ArtifactServer(bytes(reversed(wine_v2_bytes)))

    def redirect(request: httpx.Request) -> httpx.Response:
        if request.url.host == "mirror.test":
            return mirror(request)
        return httpx.Response(307, headers={"Location": "http://mirror.test/v2?X-Amz-Signature=s"})

    agent = attacked(make_agent, serving, transport, artifact=redirect)
    assert mirror.requests and "Authorization" not in mirror.requests[0].headers
    assert_refused_and_serving(api, agent, wine_example, "sha256", stage="verify")
    digest = api.get("/api/v1/models/wine/versions/2").get_json()["artifact"]["sha256"]
    assert not agent.cache.path(digest).exists()
    assert list(agent.cache.partial.iterdir()) == []
