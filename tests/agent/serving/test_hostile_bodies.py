"""Bodies from the security audit of the inference server: each is a 400 naming the problem.

Deep nesting, integers past what a float64 or an int64 holds, tensor values outside their
datatype, tensor data nested deeper than its shape. None may reach the model, log a traceback
or leave the server unable to answer the next request.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from agent.serving.json_body import MAX_DEPTH
from agent.serving.slots import Deployed
from common.schemas import Feature
from tests.agent.serving.support import ConstantRegressor, assert_error, wrap
from tests.support.models import wine_frame

ROW = wine_frame()[0].iloc[0].to_dict()
PREDICT, INFER, FEEDBACK = "/predict/wine", "/v2/models/wine/infer", "/feedback/wine"
COUNTS = "/predict/counts"  # a model with an integer feature, fed to it as a DataFrame
PLAIN = "/v2/models/plain/infer"  # a model without an input schema: only OIP checks its values
DEEP = "[" * 1000 + "]" * 1000  # the audit's body
HUGE = int("1" + "0" * 400)  # a JSON integer no float64 holds
TOO_DEEP = f"nests arrays and objects deeper than {MAX_DEPTH} levels"


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def tensors(**change) -> dict:
    """One FP64 tensor per wine feature, with some tensors changed."""
    inputs = [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]
    for tensor in inputs:
        tensor.update(change.get(tensor["name"], {}))
    return {"inputs": inputs}


def matrix(data, shape, datatype: str = "FP64") -> dict:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}


def plain(datatype: str, data: list) -> dict:
    """Tensors for the schemaless model: `a` as given, `b` a plain number."""
    b = {"name": "b", "shape": [len(data)], "datatype": "FP64", "data": [1.0] * len(data)}
    return {"inputs": [{"name": "a", "shape": [len(data)], "datatype": datatype, "data": data}, b]}


def bad(case: str, path: str, body, *words: str):
    return pytest.param(path, body, words, id=f"{path.split('/')[1]}: {case}")


ROW_VALUES = list(ROW.values())
HOSTILE = [
    # 1. nesting deeper than the parser's bound, on every route that reads a body
    bad("deep JSON", PREDICT, DEEP, TOO_DEEP),
    bad("deep JSON", INFER, DEEP, TOO_DEEP),
    bad("deep JSON", FEEDBACK, DEEP, TOO_DEEP),
    bad("deep objects", PREDICT, '{"a":' * 1000 + "1" + "}" * 1000, TOO_DEEP),
    bad("deep inside instances", PREDICT, '{"instances": ' + nested(200) + "}", TOO_DEEP),
    bad("deep tensor data", INFER, '{"inputs": [{"data": ' + nested(200) + "}]}", TOO_DEEP),
    bad("deep label", FEEDBACK, '{"request_id": "r", "label": ' + nested(200) + "}", TOO_DEEP),
    bad("deep, unterminated", PREDICT, "[" * 5000, TOO_DEEP),
    bad("deep, behind a string of ]", PREDICT, '["' + "]" * 500 + '", ' + DEEP + "]", TOO_DEEP),
    bad("deep, after escapes", PREDICT, r'["\\\"]]]\\", ' + DEEP + "]", TOO_DEEP),
    bad("deep, as UTF-16", PREDICT, DEEP.encode("utf-16"), TOO_DEEP),
    # 2. integers past float64 (number features) and int64 (integer features)
    bad("huge integer", PREDICT, {"instances": [{**ROW, "hue": HUGE}]}, "'hue'", "out of range"),
    bad("huge negative", PREDICT, {"instances": [{**ROW, "hue": -HUGE}]}, "'hue'", "401 digits"),
    bad("huge integer", INFER, tensors(hue={"data": [HUGE]}), "input 'hue'", "FP64"),
    bad("huge in a matrix", INFER, matrix([[HUGE, *ROW_VALUES[1:]]], [1, 13]), "data[0]"),
    bad("past int64", COUNTS, {"instances": [{"n": 2**63, "x": 1.0}]}, "'n'", "int64"),
    bad("float past int64", COUNTS, {"instances": [{"n": 1e30, "x": 1.0}]}, "'n'", "int64"),
    bad("huge label", FEEDBACK, {"request_id": "r", "label": HUGE}, "'label'", "out of range"),
    # 3. tensor values outside their datatype
    bad("INT8 1e30", INFER, tensors(hue={"datatype": "INT8", "data": [1e30]}), "'hue'", "INT8"),
    bad("INT8 128", INFER, tensors(hue={"datatype": "INT8", "data": [128]}), "-128 to 127"),
    bad("INT16 -32769", INFER, tensors(hue={"datatype": "INT16", "data": [-32769]}), "INT16"),
    bad("INT32 2**31", INFER, tensors(hue={"datatype": "INT32", "data": [2**31]}), "INT32"),
    bad("INT64 2**63", INFER, tensors(hue={"datatype": "INT64", "data": [2**63]}), "INT64"),
    bad("UINT8 -1", INFER, tensors(hue={"datatype": "UINT8", "data": [-1]}), "0 to 255"),
    bad("UINT16 65536", INFER, tensors(hue={"datatype": "UINT16", "data": [65536]}), "UINT16"),
    bad("UINT32 -1", INFER, tensors(hue={"datatype": "UINT32", "data": [-1]}), "UINT32"),
    bad("UINT64 2**64", INFER, tensors(hue={"datatype": "UINT64", "data": [2**64]}), "UINT64"),
    bad("INT64 3.5", INFER, tensors(hue={"datatype": "INT64", "data": [3.5]}), "whole numbers"),
    bad("FP16 70000", INFER, tensors(hue={"datatype": "FP16", "data": [70000.0]}), "FP16"),
    bad("FP32 1e39", INFER, tensors(hue={"datatype": "FP32", "data": [1e39]}), "FP32"),
    bad("FP32 matrix", INFER, matrix([*ROW_VALUES[:-1], -1e39], [1, 13], "FP32"), "data[12]"),
    bad("UINT8 -1, no schema", PLAIN, plain("UINT8", [-1]), "input 'a'", "UINT8"),
    bad("INT8 1e30, no schema", PLAIN, plain("INT8", [1e30]), "input 'a'", "INT8"),
    bad("BOOL 1, no schema", PLAIN, plain("BOOL", [1]), "input 'a'", "BOOL", "number 1"),
    bad("BOOL string, no schema", PLAIN, plain("BOOL", ["true"]), "BOOL", "string 'true'"),
    bad("BOOL null, no schema", PLAIN, plain("BOOL", [None]), "BOOL", "null"),
    bad("BOOL 1 in a matrix", INFER, matrix([1] * 13, [1, 13], "BOOL"), "BOOL", "number 1"),
    # 4. tensor data nested deeper than its shape
    bad("[[v]] for shape [1]", INFER, tensors(hue={"data": [[0.9]]}), "input 'hue'", "deeper"),
    bad("3-D for [1, 13]", INFER, matrix([[[v] for v in ROW_VALUES]], [1, 13]), "deeper"),
    bad("mixed for [2]", INFER, tensors(hue={"shape": [2], "data": [1.0, [2.0]]}), "deeper"),
    bad("ragged for [2, 13]", INFER, matrix([ROW_VALUES[:12], [*ROW_VALUES, 1]], [2, 13]), "13"),
    bad("too shallow for [1, 13, 1]", INFER, matrix([ROW_VALUES], [1, 13, 1]), "follow shape"),
]


@pytest.fixture
def slots(slots):
    """The suite's models, and two more: one with an integer feature, one with no schema."""
    counts = ConstantRegressor(3.0)
    counts.feature_names_in_ = np.array(["n", "x"], dtype=object)
    schema = [Feature(name="n", type="integer"), Feature(name="x", type="number")]
    slots.swap("counts", Deployed(wrap(counts, "counts", schema=schema)))
    slots.swap("plain", Deployed(wrap(ConstantRegressor(3.0), "plain")))
    return slots


@pytest.mark.parametrize(("path", "body", "words"), HOSTILE)
def test_a_hostile_body_is_a_400_naming_the_problem(client, calls, caplog, path, body, words):
    caplog.set_level(logging.DEBUG)
    if isinstance(body, dict):
        response = client.post(path, json=body)
    else:
        response = client.post(path, data=body, content_type="application/json")

    assert_error(response, 400, *words)
    assert calls.total == 0 and calls.events == [] and calls.feedback == []
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert client.post(PREDICT, json={"instances": [ROW]}).status_code == 200  # still serving


def test_nesting_up_to_the_bound_parses_and_one_level_more_is_refused(client):
    fits = '{"instances": ' + nested(MAX_DEPTH - 2, "{}") + "}"  # MAX_DEPTH levels in all
    deeper = '{"instances": ' + nested(MAX_DEPTH - 1, "{}") + "}"

    assert_error(client.post(PREDICT, data=fits), 400, "row 0 is an array")  # parsed
    assert_error(client.post(PREDICT, data=deeper), 400, TOO_DEEP)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(tensors(hue={"shape": [1, 1], "data": [[ROW["hue"]]]}), id="[[v]] for [1, 1]"),
        pytest.param(tensors(hue={"shape": [1, 1], "data": [ROW["hue"]]}), id="flat for [1, 1]"),
        pytest.param(matrix([ROW_VALUES], [1, 13]), id="nested for [1, 13]"),
        pytest.param(matrix(ROW_VALUES, [1, 13]), id="flat for [1, 13]"),
        pytest.param(matrix([ROW_VALUES] * 2, [2, 13]), id="nested for [2, 13]"),
        pytest.param(tensors(proline={"datatype": "INT16", "data": [1065]}), id="INT16 1065"),
        pytest.param(tensors(proline={"datatype": "UINT64", "data": [1065]}), id="UINT64 1065"),
        pytest.param(tensors(proline={"datatype": "INT64", "data": [1065.0]}), id="INT64 1065.0"),
        pytest.param(tensors(hue={"datatype": "FP16", "data": [1.04]}), id="FP16 1.04"),
        pytest.param(tensors(hue={"datatype": "FP32", "data": [1]}), id="FP32 integer 1"),
        pytest.param(plain("BOOL", [True, False]), id="BOOL, no schema"),
        pytest.param(plain("UINT8", [0, 255]), id="UINT8, no schema"),
    ],
)
def test_tensors_that_fit_their_shape_and_datatype_are_accepted(client, body):
    path = PLAIN if body["inputs"][0]["name"] == "a" else INFER
    response = client.post(path, json=body)
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(
    ("datatype", "low", "high"),
    [
        ("INT8", -128, 127),
        ("INT16", -(2**15), 2**15 - 1),
        ("INT32", -(2**31), 2**31 - 1),
        ("INT64", -(2**63), 2**63 - 1),
        ("UINT8", 0, 255),
        ("UINT16", 0, 2**16 - 1),
        ("UINT32", 0, 2**32 - 1),
        ("UINT64", 0, 2**64 - 1),
        ("FP16", -65504.0, 65504.0),
        ("FP32", -3.4028234663852886e38, 3.4028234663852886e38),
    ],
)
def test_a_numeric_datatype_holds_its_whole_range_and_nothing_past_it(client, datatype, low, high):
    def infer(value):
        return client.post(INFER, json=tensors(hue={"datatype": datatype, "data": [value]}))

    assert infer(low).status_code == infer(high).status_code == 200
    step = 1 if isinstance(high, int) else high / 1e6
    assert_error(infer(low - step), 400, "input 'hue'", datatype, "out of the range")
    assert_error(infer(high + step), 400, "input 'hue'", datatype, "out of the range")
