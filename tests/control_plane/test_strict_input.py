"""Missing bodies, values of another type, bad names: a 422 naming the field, and nothing stored.

The audit's reproductions, each with its answer: a PUT with no body is not an empty document,
`true` is not 1, `0` is not an object, and a name the pattern refuses is refused wherever it is
(path, query, body), by the pattern /openapi.json states.
"""

from __future__ import annotations

import io
import json

import pytest

import control_plane.api  # noqa: F401  (registers every operation, for the tables below)
from common.drift import build_profile
from control_plane.api.routing import OPERATIONS
from tests.support.api import Api, assert_error
from tests.support.models import wine_frame
from tests.support.reports import drift_report, shadow_report

REAL = {"env": "production", "model": "wine", "version": 1}
POLICY = {"rollback": {"failure_share": 0.5, "window_seconds": 600}}


@pytest.fixture(scope="module")
def wine_profile():
    features, _ = wine_frame()
    return build_profile(features)


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes) -> Api:
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes + b"2")
    api.set_desired("production", "wine", 1, 2)
    assert api.send("PUT", "/api/v1/environments/production/policy", POLICY).status_code == 200
    return api


@pytest.fixture
def agent(world: Api) -> dict:
    return world.enroll("production")


def stored(api: Api) -> str:
    """Everything an operator can read, policy and reports included: a refusal changes none."""
    parts = [
        api.get(path).get_json()
        for path in (
            "/api/v1/models",
            "/api/v1/environments",
            "/api/v1/environments/production/desired",
            "/api/v1/environments/production/history",
            "/api/v1/environments/production/policy",
            "/api/v1/models/wine/versions",
            "/api/v1/agents",
            "/api/v1/reports",
            "/api/v1/tokens",
        )
    ]
    return json.dumps(parts, sort_keys=True)


def url_of(path: str, agent: dict) -> str:
    return path.format(agent_id=agent["agent_id"], **REAL)


# --- missing bodies ---------------------------------------------------------------------------

REQUIRED_BODIES = sorted(
    f"{op.method.upper()} {op.path}" for op in OPERATIONS if op.body and op.body_required
)


@pytest.mark.parametrize("sent", [b"", b" \r\n"], ids=["empty", "whitespace"])
@pytest.mark.parametrize("operation", REQUIRED_BODIES)
def test_a_missing_required_body_is_422_and_stores_nothing(
    world: Api, agent: dict, operation: str, sent: bytes
):
    enrollment = world.create_token("enrollment", environment="production")
    method, path = operation.split(" ", 1)
    before = stored(world)
    token = enrollment if path.endswith("/enroll") else None
    response = world.client.open(
        url_of(path, agent),
        method=method,
        data=sent,
        headers=world.headers(token, **{"Content-Type": "application/json"}),
    )
    error = assert_error(response, 422, "invalid", "(body)")
    assert error["details"] == [{"field": "(body)", "message": "missing"}]
    assert stored(world) == before


def test_the_audited_put_without_a_body_keeps_the_policy(world: Api):
    response = world.client.put("/api/v1/environments/production/policy", headers=world.headers())
    assert_error(response, 422, "invalid", "(body)")
    assert (
        world.get("/api/v1/environments/production/policy").get_json()["rollback"]
        == (POLICY["rollback"])
    )


def test_an_environment_put_without_a_body_creates_nothing(world: Api):
    response = world.client.put("/api/v1/environments/staging", headers=world.headers())
    assert_error(response, 422, "invalid", "(body)")
    assert_error(world.get("/api/v1/environments/staging"), 404)


def test_the_openapi_document_says_which_bodies_are_required(world: Api):
    paths = world.get("/openapi.json").get_json()["paths"]
    optional = sorted(
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "requestBody" in operation and not operation["requestBody"]["required"]
    )
    assert optional == [
        "POST /api/v1/environments/{env}/promote/{model}",
        "POST /api/v1/environments/{env}/rollback/{model}",
    ]


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_an_action_takes_no_body_at_all(world: Api, action: str):
    if action == "rollback":
        assert (
            world.client.post(
                "/api/v1/environments/production/promote/wine", headers=world.headers()
            ).status_code
            == 200
        )
    response = world.client.post(
        f"/api/v1/environments/production/{action}/wine", headers=world.headers()
    )
    assert response.status_code == 200, response.get_json()
    assert (
        world.get("/api/v1/environments/production/history").get_json()["entries"][0]["action"]
        == action
    )


# --- values of another type -------------------------------------------------------------------

# (method, path, body, named field): each value a lax parser would have read as something else.
COERCED = [
    ("POST", "/api/v1/tokens", {"role": "enrollment", "environment": "production",
                                "max_uses": True}, "max_uses"),
    ("POST", "/api/v1/tokens", {"role": "viewer", "expires_in": "3600"}, "expires_in"),
    ("POST", "/api/v1/tokens", {"role": "viewer", "description": 5}, "description"),
    ("PUT", "/api/v1/environments/production/desired/wine", {"version": True}, "version"),
    ("PUT", "/api/v1/environments/production/desired/wine", {"version": "2"}, "version"),
    ("PUT", "/api/v1/environments/production/desired/wine", {"version": 2, "shadow": False},
     "shadow"),
    ("PUT", "/api/v1/environments/production", {"manifest_ttl": "86400"}, "manifest_ttl"),
    ("PUT", "/api/v1/environments/production/policy", {"promote": {"auto": 1}}, "promote.auto"),
    ("PUT", "/api/v1/environments/production/policy", {"drift": {"consecutive": True}},
     "drift.consecutive"),
    ("PATCH", "/api/v1/models/wine/versions/1", {"tags": {"stage": 1}}, "tags.stage"),
    ("POST", "/api/v1/agents/{agent_id}/heartbeat", {"applied_revision": True},
     "applied_revision"),
    ("POST", "/api/v1/agents/{agent_id}/heartbeat", {"models": {"wine": {"serving": "1"}}},
     "models.wine.serving"),
    ("POST", "/api/v1/environments/production/promote/wine", {"reason": 5}, "reason"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "field"), COERCED)
def test_a_value_of_another_type_is_422_and_stores_nothing(
    world: Api, agent: dict, method: str, path: str, body: dict, field: str
):
    before = stored(world)
    response = world.send(method, url_of(path, agent), body)
    error = assert_error(response, 422, "invalid", field)
    assert field in {item["field"] for item in error["details"]}
    assert stored(world) == before


def report_with(report: dict, path: tuple[str, ...], value: object) -> dict:
    changed = json.loads(json.dumps(report))
    *parents, last = path
    target = changed
    for key in parents:
        target = target[key]
    target[last] = value
    return changed


REPORT_CHANGES = [
    (("drift", "report", "prediction_drift"), 0, "prediction_drift"),
    (("drift", "report", "dataset_drift"), "false", "dataset_drift"),
    (("drift", "report", "n_drifted"), True, "n_drifted"),
    (("window_start",), 1_700_000_000, "window_start"),
    (("requests",), "178", "requests"),
    (("version",), True, "version"),
]


@pytest.mark.parametrize(("path", "value", "field"), REPORT_CHANGES)
def test_a_report_with_a_value_of_another_type_is_not_stored(
    world: Api, agent: dict, wine_profile, path, value, field
):
    features, _ = wine_frame()
    report = drift_report(wine_profile, features.iloc[:30], "wine", 1)
    before = stored(world)
    response = world.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/reports",
        {"reports": [report_with(report, path, value)]},
        token=agent["token"],
    )
    error = assert_error(response, 422, "invalid", field)
    assert any(item["field"].endswith(field) for item in error["details"]), error
    assert stored(world) == before


def test_what_the_projects_own_clients_send_is_still_accepted(
    world: Api, agent: dict, wine_profile
):
    features, _ = wine_frame()
    batch = [
        drift_report(wine_profile, features.iloc[:30], "wine", 1),  # ISO date-times, floats
        shadow_report("wine", 1, 2, shadowed=10, agreed=9),
    ]
    response = world.send(
        "POST", f"/api/v1/agents/{agent['agent_id']}/reports", {"reports": batch},
        token=agent["token"],
    )  # fmt: skip
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["stored"]) == 2


def test_a_whole_number_written_as_a_float_is_still_that_integer(world: Api, agent: dict):
    # JSON Schema's "integer" includes 2.0; only values a client could mean otherwise are refused.
    response = world.send(
        "PUT", "/api/v1/environments/production/desired/wine", {"version": 2.0, "shadow": 1.0}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["models"]["wine"] == {"version": 2, "shadow": 1}
    beat = world.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/heartbeat",
        {"applied_revision": 2.0, "models": {"wine": {"serving": 2.0}}},
        token=agent["token"],
    )
    assert beat.status_code == 200, beat.get_json()
    shown = world.get(f"/api/v1/agents/{agent['agent_id']}").get_json()
    assert (shown["applied_revision"], shown["models"]["wine"]["serving"]) == (2, 2)
    assert_error(
        world.send("PUT", "/api/v1/environments/production/desired/wine", {"version": 1.5}),
        422,
        "invalid",
        "version",
    )


# --- names ------------------------------------------------------------------------------------

# (method, path, body, code, named field): the name rule, wherever a name is.
BAD_NAMES = [
    ("GET", "/api/v1/environments/a..b", None, "invalid_name", "path.env"),
    ("PUT", "/api/v1/environments/Staging", {}, "invalid_name", "path.env"),
    ("GET", "/api/v1/models/" + "m" * 65, None, "invalid_name", "path.model"),
    ("PUT", "/api/v1/environments/production/desired/wine..2", {"version": 1}, "invalid_name",
     "path.model"),
    ("DELETE", "/api/v1/environments/production/blocked/-wine/1", None, "invalid_name",
     "path.model"),
    ("GET", "/api/v1/reports?environment=a..b", None, "invalid", "query.environment"),
    ("GET", "/api/v1/reports?model=Wine", None, "invalid", "query.model"),
    ("GET", "/api/v1/events?environment=" + "e" * 65, None, "invalid", "query.environment"),
    ("GET", "/api/v1/agents?environment=_x", None, "invalid", "query.environment"),
    ("POST", "/api/v1/tokens", {"role": "enrollment", "environment": "a..b"}, "invalid",
     "environment"),
    ("POST", "/api/v1/agents/{agent_id}/heartbeat", {"models": {"Wine": {}}}, "invalid",
     "models.Wine.[key]"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "code", "field"), BAD_NAMES)
def test_a_bad_name_is_422_naming_where_it_is(
    world: Api, agent: dict, method: str, path: str, body, code: str, field: str
):
    before = stored(world)
    error = assert_error(world.send(method, url_of(path, agent), body), 422, code, field)
    assert field in {item["field"] for item in error["details"]}
    assert stored(world) == before


def test_a_name_the_schema_allows_is_never_refused_as_a_name(world: Api):
    # "a.b-c_d" and 64 characters are names: the server finds nothing there, it refuses nothing.
    for name in ("a.b-c_d", "0" * 64, "x."):
        assert_error(world.get(f"/api/v1/environments/{name}"), 404, "not_found")
        assert_error(world.get(f"/api/v1/models/{name}"), 404, "not_found")


# --- uploads: each part where it belongs ------------------------------------------------------

PART_CASES = [
    # (form fields, file parts, named field)
    ({}, {"artifact": b"model"}, "metadata"),
    ({"metadata": "{}", "surprise": "1"}, {"artifact": b"model"}, "surprise"),
    ({}, {"artifact": b"model", "metadata": b"{}"}, "metadata"),
    ({"metadata": "{}", "reference_profile": "{}"}, {"artifact": b"model"}, "reference_profile"),
    ({"metadata": '{"metrics": {"accuracy": true}}'}, {"artifact": b"model"},
     "metadata.metrics.accuracy"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "files", "field"), PART_CASES)
def test_an_upload_with_a_part_missing_misplaced_or_unknown_stores_nothing(
    world: Api, app, fields: dict, files: dict, field: str
):
    before = stored(world)
    kept = sorted(app.extensions["tether"].artifacts.root.rglob("*"))
    data: dict = dict(fields)
    for name, content in files.items():
        data[name] = (io.BytesIO(content + b"-new"), f"{name}.bin")
    response = world.client.post(
        "/api/v1/models/wine/versions",
        data=data,
        headers=world.headers(),
        content_type="multipart/form-data",
    )
    assert_error(response, 422, "invalid", field)
    assert stored(world) == before
    assert sorted(app.extensions["tether"].artifacts.root.rglob("*")) == kept
