"""Loading artifacts in both formats, validating rows, predicting and smoke-testing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from agent.serving.runtime import (
    BatchTooLarge,
    InvalidInput,
    LoadFailed,
    SmokeTestFailed,
    UnsupportedFormat,
    UntrustedTypes,
    load_model,
    smoke_test,
    validate_rows,
)
from agent.serving.runtime.skops_format import is_trusted
from common.schemas import Feature
from tests.agent.serving.conftest import load
from tests.agent.serving.support import (
    ConstantRegressor,
    diabetes_frame,
    schema_of,
    train_diabetes_on_arrays,
    wrap,
)
from tests.support.models import wine_frame


@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_classifier_in_each_format_predicts_like_the_estimator(
    artifacts, wine_estimator, wine_rows, fmt
):
    model = load(artifacts, "wine", fmt)
    assert (model.kind, model.format, model.classes) == ("classifier", fmt, [0, 1, 2])

    result = model.predict(model.validate(wine_rows))

    expected = wine_frame()[0].iloc[:3]
    assert result.predictions == wine_estimator.predict(expected).tolist()
    np.testing.assert_allclose(result.probabilities, wine_estimator.predict_proba(expected))
    assert result.classes == [0, 1, 2]


@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_regressor_in_each_format_predicts_like_the_estimator(
    artifacts, diabetes_estimator, diabetes_rows, fmt
):
    model = load(artifacts, "diabetes", fmt)
    assert (model.kind, model.classes) == ("regressor", None)

    result = model.predict(model.validate(diabetes_rows))

    expected = diabetes_estimator.predict(diabetes_frame()[0].iloc[:3])
    np.testing.assert_allclose(result.predictions, expected)
    assert result.probabilities is None


def test_columns_follow_the_fitted_order_whatever_the_schema_order(wine_estimator, wine_rows):
    reversed_schema = list(reversed(schema_of(wine_frame()[0])))
    model = wrap(wine_estimator, schema=reversed_schema)
    shuffled = [dict(reversed(list(row.items()))) for row in wine_rows]

    assert (
        model.predict(shuffled).predictions
        == wine_estimator.predict(wine_frame()[0].iloc[:3]).tolist()
    )


def test_estimator_fitted_on_arrays_gets_columns_in_schema_order(diabetes_rows):
    estimator = train_diabetes_on_arrays()
    model = wrap(estimator, schema=schema_of(diabetes_frame()[0]))

    result = model.predict(diabetes_rows)

    np.testing.assert_allclose(
        result.predictions, estimator.predict(diabetes_frame()[0].iloc[:3].to_numpy())
    )


def test_mixed_types_reach_a_frame_model_with_their_dtypes():

    frame = pd.DataFrame(
        {"colour": ["red", "blue", "red", "blue"], "size": [1, 2, 3, 4], "ok": [True, False] * 2}
    )
    estimator = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, [0, 1, 0, 1])
    schema = [
        Feature(name="colour", type="string"),
        Feature(name="size", type="integer"),
        Feature(name="ok", type="boolean"),
    ]
    model = wrap(estimator, schema=schema)

    rows = model.validate([{"colour": "red", "size": 3, "ok": True}])

    assert model.predict(rows).predictions == estimator.predict(frame.iloc[[2]]).tolist()


def test_unknown_format_is_refused(artifacts):
    with pytest.raises(UnsupportedFormat, match=r"'onnx'.*joblib, skops"):
        load_model(artifacts["wine.joblib"], name="w", version=1, sha256="x", format="onnx")


def test_corrupt_artifact_fails_to_load(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"not a model")
    for fmt in ("joblib", "skops"):
        with pytest.raises(LoadFailed, match=rf"model 'w' v1: .*{fmt}"):
            load_model(path, name="w", version=1, sha256="x", format=fmt)


def test_schema_that_does_not_match_the_fitted_features_fails_to_load(artifacts):
    schema = [*schema_of(wine_frame()[0])[1:], Feature(name="colour")]
    with pytest.raises(
        LoadFailed, match=r"only in the schema: 'colour'; only in the model: 'alcohol'"
    ):
        load_model(
            artifacts["wine.joblib"],
            name="w",
            version=1,
            sha256="x",
            format="joblib",
            input_schema=schema,
        )


def test_skops_with_an_untrusted_type_is_refused(tmp_path, diabetes_estimator):
    estimator = make_pipeline(FunctionTransformer(math.fabs), Ridge())
    path = tmp_path / "sneaky.skops"
    skops.io.dump(estimator, path)

    with pytest.raises(UntrustedTypes, match=r"untrusted type: math\.fabs") as raised:
        load_model(path, name="sneaky", version=3, sha256="x", format="skops")

    assert raised.value.types == ["math.fabs"]
    assert "model 'sneaky' v3" in str(raised.value)


@pytest.mark.parametrize(
    ("type_name", "trusted"),
    [
        ("sklearn.tree._tree.Tree", True),
        ("numpy.float64", True),
        ("scipy.sparse._csr.csr_matrix", True),
        ("numpy.load", False),
        ("numpy.lib.npyio.load", False),
        ("scipy.io.loadmat", False),
        ("builtins.eval", False),
        ("os.system", False),
        ("sklearnx.Evil", False),
    ],
)
def test_skops_allow_list(type_name, trusted):
    assert is_trusted(type_name) is trusted


# --- validation ---------------------------------------------------------------------------------

SCHEMA = [
    Feature(name="x", type="number"),
    Feature(name="n", type="integer"),
    Feature(name="s", type="string"),
    Feature(name="b", type="boolean"),
]
GOOD = {"x": 1.5, "n": 2, "s": "a", "b": True}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "empty batch"),
        ({"x": 1}, "must be a list"),
        ([[1, 2]], "row 0 is an array"),
        ([GOOD, {k: v for k, v in GOOD.items() if k != "s"}], "row 1: missing feature 's'"),
        ([{**GOOD, "y": 1, "z": 2}], "row 0: unknown features 'y', 'z'"),
        ([{**GOOD, "x": "1.5"}], "feature 'x' must be a number, got string '1.5'"),
        ([{**GOOD, "x": True}], "feature 'x' must be a number, got boolean true"),
        ([{**GOOD, "x": None}], "feature 'x' must be a number, got null"),
        ([{**GOOD, "x": float("nan")}], "feature 'x' must be a finite number"),
        ([{**GOOD, "n": 2.5}], "feature 'n' must be an integer, got number 2.5"),
        ([{**GOOD, "s": 3}], "feature 's' must be a string, got number 3"),
        ([{**GOOD, "b": 1}], "feature 'b' must be a boolean, got number 1"),
    ],
)
def test_validate_rows_names_the_problem(rows, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        validate_rows(SCHEMA, rows)


def test_validate_rows_accepts_good_rows_and_integral_floats():
    rows = [GOOD, {**GOOD, "n": 3.0, "x": 2}]
    assert validate_rows(SCHEMA, rows) is rows


def test_validate_rows_limits_the_batch():
    with pytest.raises(BatchTooLarge, match="batch of 4 rows is over the limit of 3 rows"):
        validate_rows(SCHEMA, [GOOD] * 4, max_rows=3)
    assert len(validate_rows(SCHEMA, [GOOD] * 10_000)) == 10_000


def test_without_schema_rows_must_share_their_keys():
    assert validate_rows(None, [{"a": 1, "b": "x"}, {"b": "y", "a": 2}])
    with pytest.raises(InvalidInput, match="row 1: missing feature 'b'; unknown feature 'c'"):
        validate_rows(None, [{"a": 1, "b": 2}, {"a": 1, "c": 2}])
    with pytest.raises(InvalidInput, match="must be a number, string or boolean"):
        validate_rows(None, [{"a": [1]}])


def test_without_schema_the_fitted_names_are_enforced(wine_estimator, wine_rows):
    model = wrap(wine_estimator)
    assert model.predict(model.validate(wine_rows)).predictions == [0, 0, 0]
    with pytest.raises(InvalidInput, match="unknown feature 'colour'"):
        model.validate([{**wine_rows[0], "colour": 1}])


# --- smoke test ---------------------------------------------------------------------------------


class WrongRowCount(ConstantRegressor):
    def predict(self, X):
        return np.ones(len(X) + 1)


class NaNRegressor(ConstantRegressor):
    def predict(self, X):
        return np.array([1.0] + [np.nan] * (len(X) - 1))


class Raises(ConstantRegressor):
    def predict(self, X):
        raise ValueError("boom")


TWO = [Feature(name="a"), Feature(name="b")]
EXAMPLE = [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        (WrongRowCount(), "2 input rows gave 3 predictions"),
        (NaNRegressor(), "row 1: prediction nan is not a finite number"),
        (Raises(), "failed to predict: ValueError: boom"),
    ],
)
def test_smoke_test_failures_on_regressors(estimator, message):
    with pytest.raises(SmokeTestFailed, match=f"model 'm' v1: smoke test: .*{message}"):
        smoke_test(wrap(estimator, schema=TWO), EXAMPLE)


class OddClassifier(ClassifierMixin, BaseEstimator):
    """Declare classes 'no' and 'yes' but predict `label`, with `width` probabilities."""

    def __init__(self, label="maybe", width=2, value=0.5):
        self.label, self.width, self.value = label, width, value
        self.classes_ = np.array(["no", "yes"])
        self.n_features_in_ = 2

    def predict(self, X):
        return np.array([self.label] * len(X))

    def predict_proba(self, X):
        return np.full((len(X), self.width), self.value)


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        (
            OddClassifier(),
            r"row 0: predicted label 'maybe' is not one of the classes \['no', 'yes'\]",
        ),
        (OddClassifier("yes", width=3), "row 0: 3 probabilities for 2 classes"),
        (OddClassifier("yes", value=np.inf), "row 0: probability inf is not a finite number"),
    ],
)
def test_smoke_test_failures_on_classifiers(estimator, message):
    model = wrap(estimator, schema=TWO)
    assert model.kind == "classifier"
    with pytest.raises(SmokeTestFailed, match=message):
        smoke_test(model, EXAMPLE)


def test_smoke_test_refuses_an_example_that_breaks_the_schema():
    with pytest.raises(SmokeTestFailed, match=r"input example does not fit.*missing feature 'b'"):
        smoke_test(wrap(ConstantRegressor(), schema=TWO), [{"a": 1.0}])


def test_smoke_test_passes_good_models_and_skips_without_example(wine, wine_rows, diabetes):
    smoke_test(wine, wine_rows)
    smoke_test(diabetes, diabetes_frame()[0].iloc[:5].to_dict("records"))
    smoke_test(wrap(Raises(), schema=TWO), None)
    smoke_test(wrap(Raises(), schema=TWO), [])
