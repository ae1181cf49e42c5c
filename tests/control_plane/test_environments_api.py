"""Desired state per environment: revisions, ETags, If-Match, promotion, rollback, history."""

from __future__ import annotations

import pytest

from tests.support.api import Api, assert_error


@pytest.fixture
def deployed(api: Api, wine_model_bytes: bytes) -> Api:
    """An environment `production` with wine versions 1-3 registered and nothing deployed."""
    api.create_env("production")
    for _ in range(3):
        api.operator.push("wine", wine_model_bytes)
    return api


def desired(api: Api, env: str = "production") -> dict:
    return api.get(f"/api/v1/environments/{env}/desired").get_json()


def test_create_environment_is_idempotent(api: Api):
    first = api.send("PUT", "/api/v1/environments/staging", {"description": "pre-prod"})
    again = api.send("PUT", "/api/v1/environments/staging", {})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["description"] == "pre-prod"
    names = [e["name"] for e in api.get("/api/v1/environments").get_json()["environments"]]
    assert names == ["staging"]


def test_desired_state_shape_and_etag(deployed: Api):
    assert deployed.set_desired("production", "wine", 3, 2).status_code == 200
    response = deployed.get("/api/v1/environments/production/desired")
    assert response.get_json() == {
        "environment": "production",
        "revision": 1,
        "models": {"wine": {"version": 3, "shadow": 2}},
    }
    assert response.headers["ETag"] == '"1"'
    again = deployed.get("/api/v1/environments/production/desired", **{"If-None-Match": '"1"'})
    assert again.status_code == 304
    assert again.data == b""


def test_every_change_bumps_the_revision_and_is_audited(deployed: Api):
    deployed.set_desired("production", "wine", 1)
    deployed.send(
        "PUT",
        "/api/v1/environments/production/desired/wine",
        {"version": 2, "shadow": 3, "reason": "try v3 in shadow"},
    )
    deployed.send("POST", "/api/v1/environments/production/promote/wine", {"reason": "v3 agrees"})
    deployed.send("POST", "/api/v1/environments/production/rollback/wine", {"reason": "oops"})
    deployed.send("DELETE", "/api/v1/environments/production/desired/wine?reason=retired")
    assert desired(deployed) == {"environment": "production", "revision": 5, "models": {}}
    entries = deployed.get("/api/v1/environments/production/history").get_json()["entries"]
    summary = [(e["revision"], e["action"], e["before"], e["after"], e["reason"]) for e in entries]
    assert summary == [
        (5, "unset", {"version": 2, "shadow": None}, None, "retired"),
        (4, "rollback", {"version": 3, "shadow": None}, {"version": 2, "shadow": None}, "oops"),
        (3, "promote", {"version": 2, "shadow": 3}, {"version": 3, "shadow": None}, "v3 agrees"),
        (2, "set", {"version": 1, "shadow": None}, {"version": 2, "shadow": 3}, "try v3 in shadow"),
        (1, "set", None, {"version": 1, "shadow": None}, ""),
    ]
    assert all(e["actor"].startswith("admin:") for e in entries)


def test_history_pages_with_limit_and_before(deployed: Api):
    for version in (1, 2, 3, 1):
        deployed.set_desired("production", "wine", version)
    page = deployed.get("/api/v1/environments/production/history?limit=2").get_json()["entries"]
    assert [e["revision"] for e in page] == [4, 3]
    older = deployed.get(f"/api/v1/environments/production/history?limit=2&before={page[-1]['id']}")
    assert [e["revision"] for e in older.get_json()["entries"]] == [2, 1]


def test_if_match_accepts_the_current_revision(deployed: Api):
    deployed.set_desired("production", "wine", 1)
    response = deployed.set_desired("production", "wine", 2, **{"If-Match": '"1"'})
    assert response.status_code == 200
    assert response.headers["ETag"] == '"2"'


def test_stale_if_match_changes_nothing(deployed: Api):
    deployed.set_desired("production", "wine", 1)
    error = assert_error(
        deployed.set_desired("production", "wine", 2, **{"If-Match": '"0"'}), 412, "stale_revision"
    )
    assert error["details"] == {"current_revision": 1}
    assert desired(deployed)["revision"] == 1
    assert desired(deployed)["models"]["wine"]["version"] == 1


def test_unknown_version_is_404_and_revision_unchanged(deployed: Api):
    assert_error(deployed.set_desired("production", "wine", 9), 404, field="9")
    assert_error(deployed.set_desired("production", "wine", 1, 7), 404, field="7")
    assert_error(deployed.set_desired("production", "nope", 1), 404, field="nope")
    assert desired(deployed) == {"environment": "production", "revision": 0, "models": {}}


def test_promote_without_shadow_and_rollback_without_previous_conflict(deployed: Api):
    deployed.set_desired("production", "wine", 1)
    assert_error(deployed.send("POST", "/api/v1/environments/production/promote/wine", {}), 409)
    assert_error(deployed.send("POST", "/api/v1/environments/production/rollback/wine", {}), 409)
    assert desired(deployed)["revision"] == 1


def test_setting_the_same_state_twice_is_a_conflict(deployed: Api):
    deployed.set_desired("production", "wine", 1)
    assert_error(deployed.set_desired("production", "wine", 1), 409, "conflict")
    assert desired(deployed)["revision"] == 1


def test_unset_a_model_that_is_not_deployed_is_404(deployed: Api):
    assert_error(deployed.send("DELETE", "/api/v1/environments/production/desired/wine"), 404)
