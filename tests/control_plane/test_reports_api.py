"""Reports: idempotent batches, queries, and exact fleet-wide drift from merged sketches."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from common.drift import build_profile, compare, sketch
from control_plane.store.reports import INSERT_CHUNK
from tests.support.api import Api, assert_error
from tests.support.models import wine_frame
from tests.support.reports import drift_report, shadow_report


@pytest.fixture(scope="module")
def wine_profile():
    features, _ = wine_frame()
    return build_profile(features)


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes, wine_profile) -> Api:
    api.create_env("production")
    response = api.client.post(
        "/api/v1/models/wine/versions",
        data={
            "artifact": (io.BytesIO(wine_model_bytes), "wine.joblib"),
            "metadata": "{}",
            "reference_profile": (io.BytesIO(wine_profile.model_dump_json().encode()), "p.json"),
        },
        headers=api.headers(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["reference_profile"]["size"] > 0
    api.operator.push("wine", wine_model_bytes + b"2")
    api.set_desired("production", "wine", 1, 2)
    return api


def post_reports(api: Api, agent: dict, reports: list[dict]):
    return api.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/reports",
        {"reports": reports},
        token=agent["token"],
    )


def test_a_report_sent_twice_is_acknowledged_and_stored_once(world: Api, wine_profile):
    agent = world.enroll("production")
    features, _ = wine_frame()
    batch = [
        drift_report(wine_profile, features.iloc[:50], "wine", 1),
        shadow_report("wine", 1, 2, shadowed=50, agreed=49),
    ]
    first = post_reports(world, agent, batch).get_json()
    assert sorted(first["stored"]) == sorted(r["id"] for r in batch)
    again = post_reports(world, agent, batch).get_json()
    assert (again["stored"], sorted(again["duplicates"])) == ([], sorted(r["id"] for r in batch))
    assert len(world.get("/api/v1/reports").get_json()["reports"]) == 2


def test_a_report_twice_in_one_batch_is_stored_once_and_its_copy_is_a_duplicate(world: Api):
    agent = world.enroll("production")
    report = shadow_report("wine", 1, 2, shadowed=50, agreed=49)
    other = shadow_report("wine", 1, 2, shadowed=10, agreed=10)
    ack = post_reports(world, agent, [report, other, report]).get_json()
    assert (ack["stored"], ack["duplicates"]) == ([report["id"], other["id"]], [report["id"]])
    assert len(world.get("/api/v1/reports").get_json()["reports"]) == 2


def test_a_batch_larger_than_one_insert_is_stored_whole(world: Api):
    agent = world.enroll("production")
    batch = [shadow_report("wine", 1, 2, shadowed=5, agreed=5) for _ in range(INSERT_CHUNK + 3)]
    ack = post_reports(world, agent, batch).get_json()
    assert ack["stored"] == [r["id"] for r in batch] and ack["duplicates"] == []
    listed = world.get("/api/v1/reports?limit=1000").get_json()["reports"]
    assert len(listed) == INSERT_CHUNK + 3


def test_reports_filter_by_kind_agent_and_version(world: Api, wine_profile):
    first, second = world.enroll("production", "a"), world.enroll("production", "b")
    features, _ = wine_frame()
    post_reports(world, first, [drift_report(wine_profile, features.iloc[:40], "wine", 1)])
    post_reports(world, second, [shadow_report("wine", 1, 2, shadowed=10, agreed=10)])
    kinds = world.get("/api/v1/reports?kind=shadow").get_json()["reports"]
    assert [r["agent_id"] for r in kinds] == [second["agent_id"]]
    mine = world.get(f"/api/v1/reports?agent={first['agent_id']}").get_json()["reports"]
    assert [r["kind"] for r in mine] == ["drift"]
    assert world.get("/api/v1/reports?version=2").get_json()["reports"] == []


def test_fleet_drift_merges_agents_exactly(world: Api, wine_profile):
    features, _ = wine_frame()
    parts = [features.iloc[:60], features.iloc[60:120], features.iloc[120:]]
    for index, part in enumerate(parts):
        agent = world.enroll("production", f"host-{index}")
        post_reports(world, agent, [drift_report(wine_profile, part, "wine", 1)])
    fleet = world.get("/api/v1/environments/production/drift/wine").get_json()
    expected = compare(wine_profile, sketch(wine_profile, pd.concat(parts)))
    assert fleet["windows"] == 3
    assert fleet["report"]["window_rows"] == len(features)
    for name, figures in expected.features.items():
        assert fleet["report"]["features"][name]["psi"] == pytest.approx(figures.psi, abs=1e-12)
    assert len(fleet["agents"]) == 3


def test_fleet_drift_says_why_there_is_no_figure(world: Api, wine_model_bytes: bytes):
    empty = world.get("/api/v1/environments/production/drift/wine").get_json()
    assert empty["report"] is None and "no drift windows" in empty["reason"]
    world.operator.push("plain", wine_model_bytes)
    world.set_desired("production", "plain", 1)
    none = world.get("/api/v1/environments/production/drift/plain").get_json()
    assert "no reference profile" in none["reason"]


def test_fleet_shadow_sums_agents(world: Api):
    first, second = world.enroll("production", "a"), world.enroll("production", "b")
    post_reports(world, first, [shadow_report("wine", 1, 2, shadowed=100, agreed=99)])
    post_reports(
        world,
        second,
        [shadow_report("wine", 1, 2, shadowed=300, agreed=291, errors=4, shadow_p95=3.0)],
    )
    view = world.get("/api/v1/environments/production/shadow/wine").get_json()
    assert view["fleet"]["shadowed"] == 400
    assert view["fleet"]["agreement"] == pytest.approx(390 / 400)
    assert view["fleet"]["shadow_errors"] == 4
    assert view["fleet"]["latency_ratio"] == pytest.approx(3.0 / 2.0)
    assert set(view["agents"]) == {first["agent_id"], second["agent_id"]}


BAD_BATCHES = [
    ({"reports": []}, "reports"),
    ({"reports": [{"id": "x", "kind": "drift"}]}, "reports.0"),
    (
        {"reports": [{**shadow_report("wine", 1, 2, shadowed=1, agreed=1), "kind": "gossip"}]},
        "kind",
    ),
    (
        {
            "reports": [
                {**shadow_report("wine", 1, 2, shadowed=1, agreed=1), "shadow_version": None}
            ]
        },
        "shadow_version",
    ),
    (
        {"reports": [{**shadow_report("wine", 1, 2, shadowed=1, agreed=1), "model": "Bad Name"}]},
        "model",
    ),
    ({"reports": [{**shadow_report("wine", 1, 2, shadowed=1, agreed=1), "id": "../../etc"}]}, "id"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BATCHES)
def test_bad_report_batches_store_nothing(world: Api, body, field):
    agent = world.enroll("production")
    response = world.send(
        "POST", f"/api/v1/agents/{agent['agent_id']}/reports", body, token=agent["token"]
    )
    assert_error(response, 422, "invalid", field)
    assert world.get("/api/v1/reports").get_json()["reports"] == []


def test_an_agent_reports_only_for_itself(world: Api):
    first, second = world.enroll("production", "a"), world.enroll("production", "b")
    response = post_reports(
        world,
        {**second, "token": first["token"]},
        [shadow_report("wine", 1, 2, shadowed=1, agreed=1)],
    )
    assert_error(response, 403)


def test_a_bad_reference_profile_is_refused(world: Api, wine_model_bytes: bytes):
    response = world.client.post(
        "/api/v1/models/wine/versions",
        data={
            "artifact": (io.BytesIO(wine_model_bytes), "w.joblib"),
            "metadata": "{}",
            "reference_profile": (io.BytesIO(json.dumps({"nope": 1}).encode()), "p.json"),
        },
        headers=world.headers(),
        content_type="multipart/form-data",
    )
    assert_error(response, 422, "invalid", "reference_profile")
    assert len(world.get("/api/v1/models/wine/versions").get_json()["versions"]) == 2


def test_the_manifest_points_to_the_reference_profile(world: Api, wine_profile):
    agent = world.enroll("production")
    manifest = world.get(f"/api/v1/agents/{agent['agent_id']}/manifest", token=agent["token"])
    primary = manifest.get_json()["manifest"]["models"]["wine"]["primary"]
    profile = world.get("/api/v1/models/wine/versions/1/profile", token=agent["token"])
    assert profile.status_code == 200
    assert len(profile.data) == primary["reference_profile"]["size"]
    assert json.loads(profile.data)["digest"] == wine_profile.digest
