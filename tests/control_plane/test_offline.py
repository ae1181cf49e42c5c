"""Air-gapped delivery, control-plane side: bundles, provisioning, report import with acks."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.bundles import ReportAckFile, ReportExport
from common.signing import PublicKey, Signature, describe, sign, verify
from tests.support.api import Api, assert_error
from tests.support.reports import shadow_report


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes) -> Api:
    api.create_env("edge")
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes + b"shadow")
    api.set_desired("edge", "wine", 1, 2)
    return api


@pytest.fixture
def agent_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def provision(api: Api, key: Ed25519PrivateKey, env: str = "edge") -> dict:
    body = {"hostname": "edge-site-7", "public_key": describe(key.public_key()).model_dump()}
    response = api.send("POST", f"/api/v1/environments/{env}/agents", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def export_of(agent: dict, key: Ed25519PrivateKey, reports: list[dict], env: str = "edge") -> dict:
    export = ReportExport(
        agent_id=agent["agent_id"],
        environment=env,
        exported_at=datetime.now(UTC),
        reports=reports,
        heartbeats=[{"applied_revision": 1, "models": {"wine": {"serving": 1, "shadow": 2}}}],
    )
    export.signature = sign(key, export.signed_part())
    return export.model_dump(mode="json")


def test_bundle_holds_the_signed_manifest_and_exactly_what_it_names(world: Api, wine_model_bytes):
    response = world.get("/api/v1/environments/edge/bundle")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.data)
    with tarfile.open(fileobj=io.BytesIO(response.data)) as archive:
        check_bundle(archive)


def check_bundle(archive: tarfile.TarFile) -> None:
    names = archive.getnames()
    assert names[0] == "manifest.json"
    signed = json.loads(archive.extractfile("manifest.json").read())
    digests = {
        signed["manifest"]["models"]["wine"][role]["artifact"]["sha256"]
        for role in ("primary", "shadow")
    }
    assert sorted(names[1:]) == sorted(f"sha256/{d}" for d in digests)
    for digest in digests:
        assert hashlib.sha256(archive.extractfile(f"sha256/{digest}").read()).hexdigest() == digest
    trusted = {k["key_id"]: PublicKey(**k) for k in signed["manifest"]["signing_keys"]}
    verify(signed["manifest"], [Signature(**s) for s in signed["signatures"]], trusted)


def test_report_import_is_idempotent_and_acknowledged_with_a_signature(world: Api, agent_key):
    agent = provision(world, agent_key)
    reports = [shadow_report("wine", 1, 2, shadowed=50, agreed=49) for _ in range(3)]
    body = export_of(agent, agent_key, reports)
    first = world.send("POST", "/api/v1/reports/import", body)
    assert first.status_code == 200, first.get_json()
    ack = ReportAckFile.model_validate(first.get_json())
    assert (ack.stored, ack.duplicates) == (3, 0)
    assert sorted(ack.acknowledged) == sorted(r["id"] for r in reports)
    trusted = {k["key_id"]: PublicKey(**k) for k in agent["signing_keys"]}
    verify(ack.signed_part(), ack.signatures, trusted)
    again = ReportAckFile.model_validate(
        world.send("POST", "/api/v1/reports/import", body).get_json()
    )
    assert (again.stored, again.duplicates) == (0, 3)
    assert len(world.get("/api/v1/reports").get_json()["reports"]) == 3
    status = world.get("/api/v1/environments/edge/status").get_json()["agents"][0]
    assert status["last_import"] is not None
    assert status["models"]["wine"]["actual"]["serving"] == 1


def test_a_tampered_export_is_refused_whole(world: Api, agent_key):
    agent = provision(world, agent_key)
    body = export_of(agent, agent_key, [shadow_report("wine", 1, 2, shadowed=5, agreed=5)])
    body["reports"][0]["requests"] = 5000
    assert_error(world.send("POST", "/api/v1/reports/import", body), 403, field="signature")
    assert world.get("/api/v1/reports").get_json()["reports"] == []


def test_an_export_signed_by_another_key_is_refused(world: Api, agent_key):
    agent = provision(world, agent_key)
    body = export_of(
        agent, Ed25519PrivateKey.generate(), [shadow_report("wine", 1, 2, shadowed=5, agreed=5)]
    )
    assert_error(world.send("POST", "/api/v1/reports/import", body), 403)
    assert world.get("/api/v1/reports").get_json()["reports"] == []


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda b: b.update(agent_id="agt_nobody"), 404),
        (lambda b: b.update(environment="production"), 403),
        (lambda b: b.update(signature=None), 422),
        (lambda b: b.update(format="tether-reports/9"), 422),
        (lambda b: b.update(reports="many"), 422),
    ],
)
def test_bad_exports_store_nothing(world: Api, agent_key, change, status):
    agent = provision(world, agent_key)
    body = export_of(agent, agent_key, [shadow_report("wine", 1, 2, shadowed=5, agreed=5)])
    change(body)
    assert_error(world.send("POST", "/api/v1/reports/import", body), status)
    assert world.get("/api/v1/reports").get_json()["reports"] == []


def test_provisioning_needs_admin_an_environment_and_a_key(world: Api, agent_key):
    key = describe(agent_key.public_key()).model_dump()
    viewer = world.create_token("viewer")
    assert_error(
        world.send(
            "POST",
            "/api/v1/environments/edge/agents",
            {"hostname": "h", "public_key": key},
            token=viewer,
        ),
        403,
    )
    assert_error(
        world.send(
            "POST", "/api/v1/environments/nowhere/agents", {"hostname": "h", "public_key": key}
        ),
        404,
    )
    assert_error(
        world.send("POST", "/api/v1/environments/edge/agents", {"hostname": "h"}),
        422,
        field="public_key",
    )
    assert world.get("/api/v1/agents").get_json()["agents"] == []
