"""What the fuzzing found, pinned: each input once crashed (500) or passed undocumented."""

from __future__ import annotations

import pytest

from agent.serving.runtime.errors import InvalidInput
from agent.serving.runtime.model import LoadedModel
from agent.serving.runtime.oip import rows_from_inputs
from tests.support.api import Api, assert_error
from tests.support.models import iris_model

HUGE = 2**64  # past SQLite's INTEGER: the store cannot hold it


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes) -> Api:
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes)
    assert api.set_desired("production", "wine", 1).status_code == 200
    return api


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("PUT", "/api/v1/environments/production/desired/wine", {"version": HUGE}, 422, "version"),
        ("GET", f"/api/v1/reports?version={HUGE}", None, 422, "query.version"),
        ("GET", f"/api/v1/environments/production/history?before={HUGE}", None, 422, "before"),
        ("GET", f"/api/v1/models/wine/versions/{HUGE}", None, 404, None),
        ("GET", f"/api/v1/models/wine/versions/{HUGE}/artifact", None, 404, None),
        (
            "POST",
            "/api/v1/tokens",
            {"role": "enrollment", "environment": "production", "max_uses": HUGE},
            422,
            "max_uses",
        ),
        ("GET", "/api/v1/reports?enviroment=production", None, 422, "query.enviroment"),
        ("GET", "/api/v1/agents?bogus=1", None, 422, "query.bogus"),
        ("GET", "/api/v1/reports?since=1.5", None, 422, "query.since"),
        ("GET", "/api/v1/events?since=-1e-308", None, 422, "query.since"),
        ("DELETE", "/api/v1/environments/production/desired/wine?why=x", None, 422, "query.why"),
    ],
)
def test_a_hostile_value_is_refused_in_the_one_error_shape(
    world, method, path, body, status, field
):
    assert_error(world.send(method, path, body), status, field=field)


def test_a_huge_revision_in_if_match_is_a_bad_request(world: Api):
    response = world.set_desired("production", "wine", 1, **{"If-Match": str(HUGE)})
    assert_error(response, 400, "bad_request")


def test_a_huge_number_in_a_heartbeat_or_report_is_refused(world: Api):
    agent = world.enroll("production")
    beat = world.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/heartbeat",
        {"applied_revision": HUGE},
        token=agent["token"],
    )
    assert_error(beat, 422, field="applied_revision")


def test_an_existing_environment_put_again_is_a_documented_200(world: Api):
    response = world.send("PUT", "/api/v1/environments/production", {})
    assert response.status_code == 200
    spec = world.get("/openapi.json").get_json()
    assert "200" in spec["paths"]["/api/v1/environments/{env}"]["put"]["responses"]


def test_files_are_documented_with_the_media_type_they_are_sent_with(world: Api):
    spec = world.get("/openapi.json").get_json()["paths"]
    content = {
        path: spec[path]["get"]["responses"]["200"]["content"]
        for path in (
            "/api/v1/environments/{env}/bundle",
            "/api/v1/models/{model}/versions/{version}/artifact",
            "/api/v1/models/{model}/versions/{version}/profile",
        )
    }
    assert [list(c) for c in content.values()] == [
        ["application/x-tar"],
        ["application/octet-stream"],
        ["application/json"],
    ]
    bundle = world.get("/api/v1/environments/production/bundle")
    assert bundle.mimetype == "application/x-tar"


@pytest.mark.parametrize("datatype", [[], {}, ["FP64"], None, 1.5])
def test_an_oip_tensor_with_a_datatype_that_is_not_a_string_is_invalid_input(datatype):
    model = LoadedModel(iris_model(), name="iris", version=1, sha256="0" * 64, format="joblib")
    tensor = {"name": "sepal length (cm)", "shape": [1], "datatype": datatype, "data": [1.0]}
    with pytest.raises(InvalidInput, match="datatype"):
        rows_from_inputs(model, [tensor], max_rows=10)
