"""Bad input gets a clear error naming what is wrong, and stores nothing."""

from __future__ import annotations

import io
import json

import pytest

from tests.support.api import Api, assert_error

BAD_NAMES = ["..", ".hidden", "x" * 65, "has space", "Upper", "caf\u00e9", "-dash", "a/b"]


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes) -> Api:
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes)
    api.set_desired("production", "wine", 1)
    return api


def snapshot(api: Api) -> str:
    """Everything an operator can read, to prove a refused request changed nothing."""
    parts = [
        api.get("/api/v1/models").get_json(),
        api.get("/api/v1/environments").get_json(),
        api.get("/api/v1/environments/production/desired").get_json(),
        api.get("/api/v1/environments/production/history").get_json(),
        api.get("/api/v1/models/wine/versions").get_json(),
        api.get("/api/v1/agents").get_json(),
        [t["id"] for t in api.get("/api/v1/tokens").get_json()["tokens"]],
    ]
    return json.dumps(parts, sort_keys=True)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_model_names_are_refused(world: Api, wine_model_bytes: bytes, name: str):
    before = snapshot(world)
    response = world.push(name, wine_model_bytes)
    # Names with a slash never match the route; every other bad name is named in a 422.
    if "/" in name:
        assert_error(response, 404)
    else:
        assert_error(response, 422, "invalid_name", field="model name")
    assert snapshot(world) == before


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if "/" not in n])
def test_bad_environment_names_are_refused(world: Api, name: str):
    before = snapshot(world)
    assert_error(world.send("PUT", f"/api/v1/environments/{name}", {}), 422, "invalid_name")
    assert snapshot(world) == before


# (method, path, body, status, code, named field)
BAD_REQUESTS = [
    (
        "PUT",
        "/api/v1/environments/production/desired/wine",
        {"version": "three"},
        422,
        "invalid",
        "version",
    ),
    (
        "PUT",
        "/api/v1/environments/production/desired/wine",
        {"version": 0},
        422,
        "invalid",
        "version",
    ),
    (
        "PUT",
        "/api/v1/environments/production/desired/wine",
        {"version": 1, "shadow": 1},
        422,
        "invalid",
        "shadow",
    ),
    (
        "PUT",
        "/api/v1/environments/production/desired/wine",
        {"version": 2, "bogus": 1},
        422,
        "invalid",
        "bogus",
    ),
    ("PUT", "/api/v1/environments/production/desired/wine", {}, 422, "invalid", "version"),
    ("PUT", "/api/v1/environments/production/desired/wine", [1, 2], 422, "invalid", "(body)"),
    ("PUT", "/api/v1/environments/production/desired/wine", {"version": 5}, 404, "not_found", "5"),
    (
        "PUT",
        "/api/v1/environments/nowhere/desired/wine",
        {"version": 1},
        404,
        "not_found",
        "nowhere",
    ),
    (
        "PUT",
        "/api/v1/environments/production/desired/ghost",
        {"version": 1},
        404,
        "not_found",
        "ghost",
    ),
    ("DELETE", "/api/v1/environments/nowhere/desired/wine", None, 404, "not_found", "nowhere"),
    (
        "POST",
        "/api/v1/environments/production/promote/wine",
        {"reason": 5},
        422,
        "invalid",
        "reason",
    ),
    ("POST", "/api/v1/environments/production/rollback/ghost", {}, 404, "not_found", "ghost"),
    ("POST", "/api/v1/environments/production/promote/ghost", {}, 404, "not_found", "ghost"),
    (
        "DELETE",
        "/api/v1/environments/production/desired/wine?reason=" + "x" * 2001,
        None,
        422,
        "invalid",
        "query.reason",
    ),
    ("GET", "/api/v1/environments/nowhere/desired", None, 404, "not_found", "nowhere"),
    ("GET", "/api/v1/environments/nowhere/status", None, 404, "not_found", "nowhere"),
    ("GET", "/api/v1/environments/production/history?limit=0", None, 422, "invalid", "query.limit"),
    ("GET", "/api/v1/environments/production/history?limit=x", None, 422, "invalid", "query.limit"),
    ("GET", "/api/v1/models/ghost", None, 404, "not_found", "ghost"),
    ("GET", "/api/v1/models/wine/versions/9", None, 404, "not_found", "9"),
    ("GET", "/api/v1/models/wine/versions/9/artifact", None, 404, "not_found", "9"),
    ("GET", "/api/v1/models/wine/versions/one", None, 404, "not_found", None),
    ("PATCH", "/api/v1/models/wine/versions/1", {"tags": ["a"]}, 422, "invalid", "tags"),
    ("PATCH", "/api/v1/models/wine/versions/1", {"artifact": {}}, 422, "invalid", "artifact"),
    ("PATCH", "/api/v1/models/wine/versions/7", {"description": "x"}, 404, "not_found", "7"),
    ("POST", "/api/v1/tokens", {"role": "root"}, 422, "invalid", "role"),
    ("POST", "/api/v1/tokens", {"role": "enrollment"}, 422, "invalid", "environment"),
    (
        "POST",
        "/api/v1/tokens",
        {"role": "enrollment", "environment": "nowhere"},
        404,
        "not_found",
        "nowhere",
    ),
    (
        "POST",
        "/api/v1/tokens",
        {"role": "viewer", "environment": "production"},
        422,
        "invalid",
        "environment",
    ),
    ("POST", "/api/v1/tokens", {"role": "viewer", "expires_in": -5}, 422, "invalid", "expires_in"),
    (
        "POST",
        "/api/v1/tokens",
        {"role": "enrollment", "environment": "production", "max_uses": 0},
        422,
        "invalid",
        "max_uses",
    ),
    ("GET", "/api/v1/agents/agt_missing", None, 404, "not_found", "agt_missing"),
    # The query's name is typed like a body's (common.schemas.Name): its 422 names the field.
    ("GET", "/api/v1/agents?environment=Bad%20Env", None, 422, "invalid", "query.environment"),
    ("GET", "/api/v1/nothing-here", None, 404, "not_found", None),
    ("DELETE", "/api/v1/models", None, 405, "method_not_allowed", None),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "field"), BAD_REQUESTS)
def test_bad_requests(world: Api, method, path, body, status, code, field):
    before = snapshot(world)
    response = world.send(method, path, body)
    assert_error(response, status, code, field)
    assert snapshot(world) == before


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b'{"version": 1,,}', b"\xff\xfe"],
)
def test_malformed_json_is_400(world: Api, raw: bytes):
    before = snapshot(world)
    response = world.client.put(
        "/api/v1/environments/production/desired/wine",
        data=raw,
        headers={**world.headers(), "Content-Type": "application/json"},
    )
    assert_error(response, 400, "malformed_json", "JSON")
    assert snapshot(world) == before


def test_body_over_the_limit_is_413(world: Api):
    before = snapshot(world)
    huge = json.dumps({"version": 2, "reason": "x" * (2 * 1024 * 1024)})
    response = world.client.put(
        "/api/v1/environments/production/desired/wine",
        data=huge,
        headers={**world.headers(), "Content-Type": "application/json"},
    )
    assert_error(response, 413, "too_large")
    assert snapshot(world) == before


UPLOAD_CASES = [
    # (metadata text, include the artifact, status, code, named field)
    ('{"format": "onnx"}', True, 422, "invalid", "metadata.format"),
    ("{not json", True, 422, "invalid", "metadata"),
    ('{"metrics": {"acc": "high"}}', True, 422, "invalid", "metadata.metrics.acc"),
    (
        '{"input_schema": [{"name": "a", "type": "tensor"}]}',
        True,
        422,
        "invalid",
        "metadata.input_schema.0.type",
    ),
    ('{"surprise": 1}', True, 422, "invalid", "metadata.surprise"),
    ("[]", True, 422, "invalid", "metadata"),
    ("{}", False, 422, "invalid", "artifact"),
]


@pytest.mark.parametrize(("metadata", "with_file", "status", "code", "field"), UPLOAD_CASES)
def test_bad_uploads_store_nothing(
    world: Api, app, wine_model_bytes, metadata, with_file, status, code, field
):
    before = snapshot(world)
    files_before = sorted(app.extensions["tether"].artifacts.root.rglob("*"))
    data = {"metadata": metadata}
    if with_file:
        data["artifact"] = (io.BytesIO(wine_model_bytes + b"new"), "m.joblib")
    response = world.client.post(
        "/api/v1/models/wine/versions",
        data=data,
        headers=world.headers(),
        content_type="multipart/form-data",
    )
    assert_error(response, status, code, field)
    assert snapshot(world) == before
    assert sorted(app.extensions["tether"].artifacts.root.rglob("*")) == files_before


def test_upload_that_is_not_multipart_is_refused(world: Api):
    before = snapshot(world)
    response = world.send("POST", "/api/v1/models/wine/versions", {"artifact": "AAAA"})
    assert_error(response, 422, "invalid", "artifact")
    assert snapshot(world) == before


def test_empty_artifact_is_refused(world: Api):
    before = snapshot(world)
    assert_error(world.push("wine", b""), 422, "invalid", "artifact")
    assert snapshot(world) == before
