"""The local inference API through Flask's test client: no sockets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from agent.serving.app import create_inference_app
from agent.serving.events import PredictionEvent
from agent.serving.slots import Deployed, ModelSlots
from tests.agent.serving.conftest import MAX_ROWS
from tests.agent.serving.support import assert_error, diabetes_frame, wrap
from tests.support.models import wine_frame

WINE = list(wine_frame()[0].columns)


def feature_tensors(rows: list[dict], datatype: str = "FP64", nested: bool = False) -> list[dict]:
    return [
        {
            "name": name,
            "shape": [len(rows), 1] if nested else [len(rows)],
            "datatype": datatype,
            "data": [[row[name]] for row in rows] if nested else [row[name] for row in rows],
        }
        for name in rows[0]
    ]


def matrix_tensor(rows: list[dict], nested: bool = True) -> list[dict]:
    values = [[row[name] for name in WINE] for row in rows]
    return [
        {
            "name": "input-0",
            "shape": [len(rows), len(WINE)],
            "datatype": "FP64",
            "data": values if nested else [v for row in values for v in row],
        }
    ]


# --- health and metadata ------------------------------------------------------------------------


def test_live_and_ready_follow_is_ready(client, ready):
    assert client.get("/v2/health/live").json == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200

    ready["ready"] = False

    response = client.get("/v2/health/ready")
    assert (response.status_code, response.json) == (503, {"ready": False})
    assert client.get("/v2/health/live").status_code == 200


def test_ready_is_not_ready_when_the_check_raises(slots):
    def broken() -> bool:
        raise RuntimeError("state unreadable")

    app = create_inference_app(slots, is_ready=broken)
    assert app.test_client().get("/v2/health/ready").status_code == 503


def test_classifier_metadata(client):
    meta = client.get("/v2/models/wine").json

    assert (meta["name"], meta["versions"], meta["platform"]) == ("wine", ["1"], "sklearn")
    assert meta["inputs"][0] == {"name": "alcohol", "datatype": "FP64", "shape": [-1]}
    assert [i["name"] for i in meta["inputs"]] == WINE
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert client.get("/v2/models/wine/versions/1").json == meta


def test_regressor_metadata(client):
    meta = client.get("/v2/models/diabetes").json

    assert meta["versions"] == ["2"]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert meta["parameters"]["kind"] == "regressor"


def test_model_ready(client):
    assert client.get("/v2/models/wine/ready").json == {
        "name": "wine",
        "version": "1",
        "ready": True,
    }
    assert_error(client.get("/v2/models/nope/ready"), 404, "unknown model 'nope'")
    assert_error(client.get("/v2/models/wine/versions/7/ready"), 404, "version 7 is not served")


# --- predictions --------------------------------------------------------------------------------


def test_predict_classifier(client, calls, wine_rows, wine_estimator):
    response = client.post(
        "/predict/wine", json={"instances": wine_rows}, headers={"X-Request-Id": "req-1"}
    )

    assert response.status_code == 200, response.json
    body = response.json
    expected = wine_estimator.predict_proba(wine_frame()[0].iloc[:3])
    assert body["predictions"] == [0, 0, 0]
    np.testing.assert_allclose(body["probabilities"], expected)
    assert (body["classes"], body["model"], body["version"]) == ([0, 1, 2], "wine", 1)
    assert body["request_id"] == response.headers["X-Request-Id"] == "req-1"
    [event] = calls.events
    assert isinstance(event, PredictionEvent)
    assert (event.model, event.version, event.request_id) == ("wine", 1, "req-1")
    assert event.rows == wine_rows and event.prediction.predictions == [0, 0, 0]
    assert event.deployed.primary.name == "wine" and event.latency_seconds > 0


def test_predict_regressor(client, diabetes_rows, diabetes_estimator):
    body = client.post("/predict/diabetes", json={"instances": diabetes_rows}).json

    expected = diabetes_estimator.predict(diabetes_frame()[0].iloc[:3])
    np.testing.assert_allclose(body["predictions"], expected)
    assert "probabilities" not in body and body["version"] == 2
    assert len(body["request_id"]) == 32


def test_predict_accepts_any_content_type(client, wine_rows):
    response = client.post(
        "/predict/wine",
        data=json.dumps({"instances": wine_rows[:1]}),
        content_type="application/x-www-form-urlencoded",  # what curl -d sends
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param(lambda rows: feature_tensors(rows), id="tensor-per-feature"),
        pytest.param(lambda rows: feature_tensors(rows, nested=True), id="per-feature-Nx1"),
        pytest.param(lambda rows: matrix_tensor(rows), id="2d-nested"),
        pytest.param(lambda rows: matrix_tensor(rows, nested=False), id="2d-flat"),
    ],
)
def test_infer_in_each_layout(client, calls, wine_rows, wine_estimator, inputs):
    response = client.post("/v2/models/wine/infer", json={"id": "abc", "inputs": inputs(wine_rows)})

    assert response.status_code == 200, response.json
    body = response.json
    assert (body["model_name"], body["model_version"], body["id"]) == ("wine", "1", "abc")
    predict, proba = body["outputs"]
    assert predict == {"name": "predict", "datatype": "INT64", "shape": [3], "data": [0, 0, 0]}
    assert (proba["name"], proba["datatype"], proba["shape"]) == ("predict_proba", "FP64", [3, 3])
    expected = wine_estimator.predict_proba(wine_frame()[0].iloc[:3])
    np.testing.assert_allclose(np.reshape(proba["data"], (3, 3)), expected)
    assert calls.events[0].request_id == "abc"


def test_infer_regressor_and_requested_outputs(client, diabetes_rows):
    body = client.post(
        "/v2/models/diabetes/versions/2/infer",
        json={"inputs": feature_tensors(diabetes_rows, "FP32")},
    ).json
    [predict] = body["outputs"]
    assert (predict["datatype"], predict["shape"]) == ("FP64", [3])

    body = client.post(
        "/v2/models/wine/infer",
        json={
            "inputs": matrix_tensor(wine_frame()[0].iloc[:2].to_dict("records")),
            "outputs": [{"name": "predict"}],
        },
    ).json
    assert [o["name"] for o in body["outputs"]] == ["predict"]


def test_prediction_hook_failure_never_reaches_the_caller(slots, wine_rows, caplog):
    def explode(event: PredictionEvent) -> None:
        raise RuntimeError("window full")

    app = create_inference_app(slots, is_ready=lambda: True, on_prediction=explode)

    response = app.test_client().post("/predict/wine", json={"instances": wine_rows})

    assert response.status_code == 200
    assert "on_prediction hook failed" in caplog.text


def test_model_failure_is_a_500_naming_the_model(slots, wine_rows, monkeypatch):
    def broken(frame, probabilities=True):
        raise ValueError("matrix not aligned")

    monkeypatch.setattr(slots.get("wine").primary.estimator, "predict", broken)
    monkeypatch.setattr(slots.get("wine").primary, "_head", None)
    app = create_inference_app(slots, is_ready=lambda: True)

    response = app.test_client().post("/predict/wine", json={"instances": wine_rows})

    assert_error(response, 500, "model 'wine' v1 failed to predict", "matrix not aligned")


# --- feedback -----------------------------------------------------------------------------------


def test_feedback_single_and_batch(client, calls):
    response = client.post("/feedback/wine", json={"request_id": "r1", "label": 2})
    assert (response.status_code, response.json) == (202, {"accepted": 1})

    response = client.post(
        "/feedback/wine",
        json={
            "feedback": [
                {"request_id": "r2", "label": 0, "index": 1},
                {"request_id": "r3", "label": 1},
            ]
        },
    )
    assert (response.status_code, response.json) == (202, {"accepted": 2})
    assert [(f.model, f.request_id, f.label, f.index) for f in calls.feedback] == [
        ("wine", "r1", 2, None),
        ("wine", "r2", 0, 1),
        ("wine", "r3", 1, None),
    ]


def test_feedback_hook_failure_is_a_503(slots):
    def refuse(items):
        raise OSError("disk full")

    app = create_inference_app(slots, is_ready=lambda: True, on_feedback=refuse)
    response = app.test_client().post("/feedback/wine", json={"request_id": "r", "label": 1})
    assert_error(response, 503, "feedback could not be recorded", "disk full")


# --- bad requests -------------------------------------------------------------------------------

ROW = wine_frame()[0].iloc[0].to_dict()
NO_ALCOHOL = {k: v for k, v in ROW.items() if k != "alcohol"}


def tensors_for(row: dict, **change) -> list[dict]:
    tensors = feature_tensors([row])
    for tensor in tensors:
        tensor.update(change.get(tensor["name"], {}))
    return tensors


PREDICT, INFER, FEEDBACK = "/predict/wine", "/v2/models/wine/infer", "/feedback/wine"
N = MAX_ROWS + 1
LONG = "x" * 70_000  # over the app's 64 KiB body limit


def bad(case: str, path: str, body, status: int, *words: str):
    return pytest.param(path, body, status, words, id=f"{path.split('/')[1]}: {case}")


def tensor(name: str, data: list, shape: list | None = None, datatype: str = "FP64") -> dict:
    return {"name": name, "shape": shape or [len(data)], "datatype": datatype, "data": data}


BAD_REQUESTS = [
    bad("missing feature", PREDICT, {"instances": [NO_ALCOHOL]}, 400, "missing feature 'alcohol'"),
    bad("wrong type", PREDICT, {"instances": [{**ROW, "hue": "pale"}]}, 400, "'hue' must be a num"),
    bad("null value", PREDICT, {"instances": [{**ROW, "hue": None}]}, 400, "'hue'", "null"),
    bad("unknown feature", PREDICT, {"instances": [{**ROW, "colour": 1}]}, 400, "feature 'colour'"),
    bad("unknown model", "/predict/nope", {"instances": [ROW]}, 404, "unknown model 'nope'"),
    bad("empty instances", PREDICT, {"instances": []}, 400, "empty batch"),
    bad("oversize batch", PREDICT, {"instances": [ROW] * N}, 413, f"{N} rows", f"limit of {N - 1}"),
    bad("malformed JSON", PREDICT, b'{"instances": [', 400, "not valid JSON"),
    bad("empty body", PREDICT, b"", 400, "body is empty"),
    bad("form, not JSON", PREDICT, b"alcohol=14.2", 400, "not valid JSON"),
    bad("body is a list", PREDICT, [ROW], 400, "must be a JSON object", "list"),
    bad("no instances", PREDICT, {"rows": [ROW]}, 400, "unknown field", "rows"),
    bad("instances not a list", PREDICT, {"instances": ROW}, 400, "rows must be a list"),
    bad("instance not an object", PREDICT, {"instances": [[1, 2]]}, 400, "row 0 is an array"),
    bad("body too large", PREDICT, {"instances": LONG}, 413, "over the limit of 65536 bytes"),
    bad("missing feature", INFER, {"inputs": feature_tensors([NO_ALCOHOL])}, 400, "'alcohol'"),
    bad(
        "wrong datatype",
        INFER,
        {"inputs": tensors_for(ROW, hue={"datatype": "BYTES", "data": ["pale"]})},
        400,
        "datatype BYTES",
        "feature 'hue'",
    ),
    bad(
        "wrong value type",
        INFER,
        {"inputs": tensors_for(ROW, hue={"data": ["pale"]})},
        400,
        "feature 'hue' must be a number",
    ),
    bad(
        "unknown datatype",
        INFER,
        {"inputs": tensors_for(ROW, hue={"datatype": "FLOAT"})},
        400,
        "input 'hue'",
        "unknown datatype 'FLOAT'",
    ),
    bad(
        "unknown feature",
        INFER,
        {"inputs": [*feature_tensors([ROW]), tensor("colour", [1])]},
        400,
        "unknown feature 'colour'",
    ),
    bad("unknown model", "/v2/models/nope/infer", {"inputs": []}, 404, "unknown model 'nope'"),
    bad("unknown version", "/v2/models/wine/versions/9/infer", {}, 404, "version 9 is not served"),
    bad("empty batch", INFER, {"inputs": [tensor("x", [], [0, 13])]}, 400, "empty batch"),
    bad("oversize batch", INFER, {"inputs": matrix_tensor([ROW] * N)}, 413, f"limit of {N - 1}"),
    bad(
        "shape and data disagree",
        INFER,
        {"inputs": tensors_for(ROW, hue={"shape": [2]})},
        400,
        "input 'hue'",
        "shape [2] holds 2 values but 'data' has 1",
    ),
    bad(
        "rows differ",
        INFER,
        {"inputs": tensors_for(ROW, hue={"shape": [2], "data": [1.0, 2.0]})},
        400,
        "different numbers of rows",
        "'hue': 2",
    ),
    bad("2-D too narrow", INFER, {"inputs": [tensor("x", [1, 2], [1, 2])]}, 400, "13 features"),
    bad("no inputs", INFER, {"id": "a"}, 400, "'inputs' must be a non-empty array"),
    bad("no shape", INFER, {"inputs": [{"name": "hue", "data": [1]}]}, 400, "'shape'"),
    bad(
        "unknown output",
        INFER,
        {"inputs": feature_tensors([ROW]), "outputs": [{"name": "scores"}]},
        400,
        "unknown output 'scores'",
        "predict, predict_proba",
    ),
    bad("bad id", INFER, {"id": 7, "inputs": feature_tensors([ROW])}, 400, "'id' must be"),
    bad("malformed JSON", INFER, b"{inputs", 400, "not valid JSON"),
    bad("body is a string", INFER, "inputs", 400, "must be a JSON object", "str"),
    bad("unknown model", "/feedback/nope", {"request_id": "r", "label": 1}, 404, "model 'nope'"),
    bad("missing label", FEEDBACK, {"request_id": "r"}, 400, "missing 'label'"),
    bad("label not a scalar", FEEDBACK, {"request_id": "r", "label": [1]}, 400, "'label' must"),
    bad("missing request id", FEEDBACK, {"label": 1}, 400, "'request_id'"),
    bad("unknown field", FEEDBACK, {"request_id": "r", "label": 1, "x": 2}, 400, "unknown field"),
    bad("bad index", FEEDBACK, {"request_id": "r", "label": 1, "index": -1}, 400, "'index'"),
    bad("empty feedback", FEEDBACK, {"feedback": []}, 400, "non-empty array"),
    bad(
        "bad item in batch",
        FEEDBACK,
        {"feedback": [{"request_id": "r", "label": 1}, {"label": 1}]},
        400,
        "feedback[1]",
        "'request_id'",
    ),
    bad(
        "oversize feedback",
        FEEDBACK,
        {"feedback": [{"request_id": "r", "label": 1}] * N},
        413,
        f"limit of {N - 1}",
    ),
    bad("malformed JSON", FEEDBACK, b"{", 400, "not valid JSON"),
]


def _post(client, path: str, body):
    if isinstance(body, bytes):
        return client.post(path, data=body, content_type="application/json")
    return client.post(path, json=body)


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_REQUESTS)
def test_bad_requests_are_refused_before_the_model(client, calls, path, body, status, words):
    response = _post(client, path, body)

    assert_error(response, status, *words)
    assert calls.total == 0 and calls.events == [] and calls.feedback == []


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("GET", "/v2/models/nope", 404, ["unknown model 'nope'"]),
        ("GET", "/predict/wine", 405, ["method GET not allowed", "allowed: POST"]),
        ("POST", "/v2/models/wine", 405, ["allowed: GET"]),
        ("GET", "/v1/anything", 404, ["not found: /v1/anything"]),
    ],
)
def test_routing_errors_have_the_error_shape(client, method, path, status, words):
    assert_error(client.open(path, method=method), status, *words)


def test_unknown_model_lists_none_when_nothing_is_served():
    app = create_inference_app(ModelSlots(), is_ready=lambda: False)
    response = app.test_client().post("/predict/wine", json={"instances": [ROW]})
    assert_error(response, 404, "serving: none")


def test_string_labels_are_bytes_tensors(wine_rows):
    features, target = wine_frame()
    names = np.array(["barolo", "grignolino", "barbera"])[target]
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    slots = ModelSlots()
    slots.swap("grapes", Deployed(wrap(estimator.fit(features, names), "grapes")))
    client = create_inference_app(slots, is_ready=lambda: True).test_client()

    assert client.get("/v2/models/grapes").json["outputs"][0]["datatype"] == "BYTES"
    body = client.post("/predict/grapes", json={"instances": wine_rows[:1]}).json
    assert body["predictions"] == ["barolo"] and body["classes"] == [
        "barbera",
        "barolo",
        "grignolino",
    ]
    infer = client.post(
        "/v2/models/grapes/infer", json={"inputs": matrix_tensor(wine_rows[:1])}
    ).json
    assert infer["outputs"][0] == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [1],
        "data": ["barolo"],
    }
