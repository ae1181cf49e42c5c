"""Reconcile against the real API in process: converge, refuse, keep serving, prune, restore."""

from __future__ import annotations

import json

import httpx
import pytest

from agent.local.state import StateStore
from agent.serving.runtime import load_model
from agent.sync.reconciler import ManifestRefused
from common.schemas import SignedManifest
from tests.agent.fakes import route_artifacts
from tests.support.agent_world import ENV, desire


def served(daemon) -> dict[str, tuple[int, int | None]]:
    return {
        name: (d.primary.version, d.shadow.version if d.shadow else None)
        for name, d in daemon.slots.snapshot().items()
    }


def env_status(api) -> dict:
    return api.get(f"/api/v1/environments/{ENV}/status").get_json()


def test_converges_on_the_desired_state_and_reports_it(
    api, make_agent, push, wine_model_bytes, wine_v2_bytes, wine_example
):
    v1 = push(wine_model_bytes)
    push(wine_v2_bytes)
    revision = desire(api, "wine", 2, shadow=1)
    agent = make_agent()
    agent.poller.poll_once()

    assert served(agent) == {"wine": (2, 1)}
    assert agent.slots.get("wine").primary.predict(wine_example).predictions
    status = env_status(api)
    assert status["converged"] == 1 and status["total"] == 1
    assert status["agents"][0]["applied_revision"] == revision

    # The state file is the contract agent.serving.embedded reads.
    state = json.loads((agent.settings.data_dir / "state.json").read_text())
    applied = state["applied"]
    assert applied["environment"] == ENV and applied["revision"] == revision
    assert applied["models"]["wine"]["shadow"] == {
        "version": 1,
        "sha256": v1["artifact"]["sha256"],
        "size": v1["artifact"]["size"],
        "format": "joblib",
        "input_schema": None,
    }
    cached = (
        agent.settings.data_dir
        / "artifacts"
        / "sha256"
        / applied["models"]["wine"]["primary"]["sha256"]
    )
    assert cached.read_bytes() == wine_v2_bytes


def test_the_embedded_api_reads_what_the_reconciler_wrote(
    api, make_agent, push, wine_model_bytes, wine_example
):
    from agent.serving.embedded import LocalModels

    push(wine_model_bytes)
    desire(api, "wine", 1)
    agent = make_agent()
    agent.poller.poll_once()
    local = LocalModels(agent.settings.data_dir)
    assert local.names() == ["wine"]
    assert len(local.predict("wine", wine_example).predictions) == 3


def test_promotion_reuses_the_loaded_model(api, make_agent, push, wine_model_bytes, wine_v2_bytes):
    push(wine_model_bytes)
    push(wine_v2_bytes)
    desire(api, "wine", 1, shadow=2)
    agent = make_agent()
    agent.poller.poll_once()
    shadow = agent.slots.get("wine").shadow
    assert api.send("POST", f"/api/v1/environments/{ENV}/promote/wine", {}).status_code == 200
    agent.poller.poll_once()
    assert agent.slots.get("wine").primary is shadow  # no reload, no second download


class Corrupting(httpx.MockTransport):
    """Serve the artifact of `version` with one byte flipped while `active`; the rest untouched."""

    def __init__(self, fallback: httpx.BaseTransport, version: int) -> None:
        self.active = True

        def handler(request: httpx.Request) -> httpx.Response:
            response = fallback.handle_request(request)
            if not self.active or f"/versions/{version}/artifact" not in request.url.path:
                return response
            body = bytearray(response.read())
            body[len(body) // 2] ^= 0xFF
            return httpx.Response(
                response.status_code, headers=response.headers, content=bytes(body)
            )

        super().__init__(route_artifacts(handler, fallback).handler)


def test_wrong_bytes_are_refused_and_the_old_model_keeps_serving(
    api, make_agent, push, transport, wine_model_bytes, wine_v2_bytes
):
    push(wine_model_bytes)
    push(wine_v2_bytes)
    desire(api, "wine", 1)
    agent = make_agent(Corrupting(transport, version=2))
    agent.poller.poll_once()
    assert served(agent) == {"wine": (1, None)}

    desire(api, "wine", 2)
    agent.poller.poll_once()
    assert served(agent) == {"wine": (1, None)}  # v2 refused, v1 still serving
    actual = agent.store.load().actual["wine"]
    assert (actual.status, actual.stage) == ("failed", "verify")
    assert (actual.serving, actual.target) == (1, 2)  # v1 serves, v2 is what failed
    assert "sha256" in actual.error
    digest = api.get("/api/v1/models/wine/versions/2").get_json()["artifact"]["sha256"]
    assert not agent.cache.has(digest, len(wine_v2_bytes))
    assert list(agent.cache.partial.iterdir()) == []
    reported = env_status(api)["agents"][0]["models"]["wine"]
    assert reported["actual"]["status"] == "failed" and reported["actual"]["stage"] == "verify"
    assert not reported["converged"]


def test_after_a_failure_it_retries_and_converges(
    api, make_agent, push, transport, wine_model_bytes, wine_v2_bytes
):
    push(wine_model_bytes)
    push(wine_v2_bytes)
    desire(api, "wine", 2)
    server = Corrupting(transport, version=2)
    agent = make_agent(server)
    agent.poller.poll_once()
    assert served(agent) == {} and not agent.is_ready()
    assert agent.store.load().actual["wine"].status == "failed"
    server.active = False
    agent.poller.poll_once()  # 304: nothing new, but the failed model is tried again
    assert served(agent) == {"wine": (2, None)} and agent.is_ready()
    actual = agent.store.load().actual["wine"]
    assert (actual.status, actual.error, actual.stage) == ("ok", None, None)


def test_a_failing_smoke_test_keeps_the_old_model(
    api, make_agent, push, wine_model_bytes, wine_v2_bytes, wine_example
):
    push(wine_model_bytes)
    broken_example = [{"not a feature": 1.0}]
    push(wine_v2_bytes, input_example=broken_example)
    desire(api, "wine", 1)
    agent = make_agent()
    agent.poller.poll_once()
    desire(api, "wine", 2)
    agent.poller.poll_once()
    assert served(agent) == {"wine": (1, None)}
    actual = agent.store.load().actual["wine"]
    assert (actual.status, actual.stage) == ("failed", "smoke_test")


def test_an_artifact_that_will_not_load_keeps_the_old_model(
    api, make_agent, push, wine_model_bytes
):
    push(wine_model_bytes)
    push(b"this is not a joblib file")
    desire(api, "wine", 1)
    agent = make_agent()
    agent.poller.poll_once()
    desire(api, "wine", 2)
    agent.poller.poll_once()
    assert served(agent) == {"wine": (1, None)}
    actual = agent.store.load().actual["wine"]
    assert (actual.status, actual.stage) == ("failed", "load")


def test_a_failed_shadow_keeps_the_whole_old_deployment(
    api, make_agent, push, wine_model_bytes, wine_v2_bytes
):
    push(wine_model_bytes)
    push(wine_v2_bytes)
    push(b"garbage")
    desire(api, "wine", 1)
    agent = make_agent()
    agent.poller.poll_once()
    desire(api, "wine", 2, shadow=3)
    agent.poller.poll_once()
    assert served(agent) == {"wine": (1, None)}
    assert "shadow v3" in agent.store.load().actual["wine"].error


def test_an_older_revision_is_refused(api, make_agent, push, wine_model_bytes, wine_v2_bytes):
    push(wine_model_bytes)
    push(wine_v2_bytes)
    desire(api, "wine", 1)
    agent = make_agent()
    old = agent.client.fetch_manifest()
    desire(api, "wine", 2)
    agent.poller.poll_once()
    assert served(agent) == {"wine": (2, None)}
    with pytest.raises(ManifestRefused, match="older than revision"):
        agent.reconciler.accept(old.signed, old.etag)  # type: ignore[union-attr]
    assert served(agent) == {"wine": (2, None)}
    assert agent.store.load().accepted_revision == old.signed.manifest.revision + 1  # type: ignore[union-attr]


def test_a_replayed_old_manifest_is_refused_by_the_poll(
    api, make_agent, push, transport, wine_model_bytes, wine_v2_bytes
):
    push(wine_model_bytes)
    push(wine_v2_bytes)
    desire(api, "wine", 1)
    agent = make_agent()
    stale = agent.client.fetch_manifest()
    desire(api, "wine", 2)
    agent.poller.poll_once()

    def replay(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/manifest"):
            return httpx.Response(200, json=stale.signed.model_dump(mode="json"))  # type: ignore[union-attr]
        return transport.handle_request(request)

    replayed = make_agent(httpx.MockTransport(replay), data_dir=agent.settings.data_dir)
    replayed.reconciler.restore()
    replayed.poller.poll_once()
    assert served(replayed) == {"wine": (2, None)}
    state = replayed.store.load()
    assert "manifest refused" in (state.last_error or "")
    assert state.applied.revision == state.accepted_revision  # type: ignore[union-attr]


def test_a_manifest_for_another_environment_is_refused(make_agent, push, api, wine_model_bytes):
    push(wine_model_bytes)
    desire(api, "wine", 1)
    agent = make_agent()
    # Genuinely signed by the same control plane, for another environment.
    api.create_env("staging")
    other = api.enroll("staging")
    foreign = SignedManifest.model_validate(
        api.get(f"/api/v1/agents/{other['agent_id']}/manifest", token=other["token"]).get_json()
    )
    with pytest.raises(ManifestRefused, match="staging"):
        agent.reconciler.accept(foreign, None)
    assert agent.store.load().accepted_revision == 0


def test_a_model_removed_from_the_manifest_is_unloaded(api, make_agent, push, wine_model_bytes):
    push(wine_model_bytes)
    push(wine_model_bytes, model="other")
    desire(api, "wine", 1)
    desire(api, "other", 1)
    agent = make_agent()
    agent.poller.poll_once()
    assert set(served(agent)) == {"wine", "other"}
    assert api.send("DELETE", f"/api/v1/environments/{ENV}/desired/other").status_code == 200
    agent.poller.poll_once()
    assert served(agent) == {"wine": (1, None)}
    state = agent.store.load()
    assert set(state.applied.models) == {"wine"} and set(state.actual) == {"wine"}  # type: ignore[union-attr]
    assert env_status(api)["converged"] == 1


def test_the_cache_keeps_the_last_n_versions(api, make_agent, push, wine_model_bytes):
    import io

    import joblib

    from tests.support.models import train_wine

    digests = []
    agent = make_agent(keep_versions=2)
    for number, c in enumerate((1.0, 0.5, 0.25, 0.125), start=1):
        buffer = io.BytesIO()
        joblib.dump(train_wine(c=c), buffer)
        digests.append(push(buffer.getvalue())["artifact"]["sha256"])
        desire(api, "wine", number)
        agent.poller.poll_once()
        assert served(agent) == {"wine": (number, None)}
    cached = {p.name for p in agent.cache.by_digest.iterdir()}
    assert cached == set(digests[-2:])  # the serving version and the one before, for rollback
    # Rolling back to the previous version needs no download.
    assert api.send("POST", f"/api/v1/environments/{ENV}/rollback/wine", {}).status_code == 200
    before = len(list(agent.cache.by_digest.iterdir()))
    agent.poller.poll_once()
    assert served(agent) == {"wine": (3, None)}
    assert len(list(agent.cache.by_digest.iterdir())) == before


def test_restart_serves_from_the_cache_without_the_network(
    api, make_agent, push, wine_model_bytes, wine_example
):
    push(wine_model_bytes)
    desire(api, "wine", 1)
    first = make_agent()
    first.poller.poll_once()

    def no_network(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("network is unreachable")

    offline = make_agent(httpx.MockTransport(no_network), data_dir=first.settings.data_dir)
    assert offline.reconciler.restore() == ["wine"]
    assert offline.is_ready()
    assert offline.slots.get("wine").primary.predict(wine_example).predictions
    delay = offline.poller.poll_once()
    assert delay <= offline.settings.backoff_max
    state = offline.store.load()
    assert state.reachable is False and "network is unreachable" in state.last_error  # type: ignore[operator]
    assert state.actual["wine"].status == "ok"


def test_restart_refuses_a_cached_file_changed_on_disk(api, make_agent, push, wine_model_bytes):
    pushed = push(wine_model_bytes)
    desire(api, "wine", 1)
    first = make_agent()
    first.poller.poll_once()
    cached = first.cache.path(pushed["artifact"]["sha256"])
    tampered = bytearray(cached.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01  # changed on disk while the agent was stopped
    cached.write_bytes(bytes(tampered))
    second = make_agent(data_dir=first.settings.data_dir)
    assert second.reconciler.restore() == []
    assert (second.store.load().actual["wine"].stage) == "verify"
    second.poller.poll_once()  # downloads it again, verified
    assert served(second) == {"wine": (1, None)}


def test_a_caller_verified_model_loads(tmp_path, wine_model_bytes):
    """The runtime's contract the reconciler relies on: it loads a path it is given."""
    path = tmp_path / "m"
    path.write_bytes(wine_model_bytes)
    model = load_model(path, name="wine", version=1, sha256="0" * 64, format="joblib")
    assert model.kind == "classifier"


def test_status_is_readable_by_another_process(make_agent, api, push, wine_model_bytes):
    push(wine_model_bytes)
    desire(api, "wine", 1)
    agent = make_agent()
    agent.poller.poll_once()
    state = StateStore(agent.settings.data_dir).load()
    assert state.actual["wine"].serving == 1 and state.last_successful_poll is not None
