"""The in-process API reading the agent's data directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.serving.embedded import LocalModels
from agent.serving.runtime import InvalidInput, LoadFailed, ModelNotFound
from common.digests import sha256_file
from tests.agent.serving.support import diabetes_frame, schema_of
from tests.support.models import wine_frame


def install(data_dir: Path, artifact: Path) -> dict:
    """Put an artifact into the agent's cache and return its state entry."""
    digest = sha256_file(artifact)
    target = data_dir / "artifacts" / "sha256" / digest
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact, target)
    return {"sha256": digest, "size": target.stat().st_size}


def write_state(data_dir: Path, models: dict, revision: int = 1) -> None:
    state = {"applied": {"environment": "staging", "revision": revision, "models": models}}
    (data_dir / "state.json").write_text(json.dumps(state))


def entry(data_dir: Path, artifact: Path, version: int, fmt: str, frame) -> dict:
    schema = [f.model_dump(mode="json") for f in schema_of(frame)]
    return {
        "primary": {
            **install(data_dir, artifact),
            "version": version,
            "format": fmt,
            "input_schema": schema,
        },
        "shadow": None,
    }


@pytest.fixture
def data_dir(tmp_path, artifacts) -> Path:
    write_state(
        tmp_path,
        {
            "wine": entry(tmp_path, artifacts["wine.joblib"], 3, "joblib", wine_frame()[0]),
            "diabetes": entry(
                tmp_path, artifacts["diabetes.skops"], 1, "skops", diabetes_frame()[0]
            ),
        },
    )
    return tmp_path


def test_loads_the_applied_models_and_predicts(data_dir, wine_rows, diabetes_rows, wine_estimator):
    models = LocalModels(data_dir)

    assert models.names() == ["diabetes", "wine"]
    assert (models.environment, models.revision) == ("staging", 1)
    result = models.predict("wine", wine_rows)
    assert result.predictions == [0, 0, 0] and result.classes == [0, 1, 2]
    expected = wine_estimator.predict_proba(wine_frame()[0].iloc[:3])
    np.testing.assert_allclose(result.probabilities, expected)
    assert len(models.predict("diabetes", diabetes_rows).predictions) == 3
    assert models.get("wine").version == 3


def test_validates_rows_and_names_unknown_models(data_dir, wine_rows):
    models = LocalModels(data_dir)
    with pytest.raises(InvalidInput, match="unknown feature 'colour'"):
        models.predict("wine", [{**wine_rows[0], "colour": 1}])
    with pytest.raises(ModelNotFound, match=r"unknown model 'nope' \(loaded: diabetes, wine\)"):
        models.predict("nope", wine_rows)


def test_refuses_an_artifact_changed_on_disk(data_dir):
    state = json.loads((data_dir / "state.json").read_text())
    digest = state["applied"]["models"]["wine"]["primary"]["sha256"]
    path = data_dir / "artifacts" / "sha256" / digest
    path.write_bytes(path.read_bytes()[:-1] + b"\0")

    with pytest.raises(LoadFailed, match=r"model 'wine': refused, .*sha256"):
        LocalModels(data_dir)


def test_refresh_swaps_changed_models_and_keeps_the_old_one_on_failure(data_dir, artifacts):
    models = LocalModels(data_dir)
    before = models.get("diabetes")
    state = json.loads((data_dir / "state.json").read_text())
    models_state = state["applied"]["models"]
    models_state["diabetes"] = entry(
        data_dir, artifacts["diabetes.joblib"], 2, "joblib", diabetes_frame()[0]
    )
    models_state["wine"]["primary"]["sha256"] = "f" * 64  # not in the cache
    write_state(data_dir, models_state, revision=2)

    with pytest.raises(LoadFailed, match=r"model 'wine': artifact .* is missing"):
        models.refresh()

    assert models.get("diabetes").version == 2 and models.get("diabetes") is not before
    assert models.get("wine").version == 3  # the last good one keeps serving

    del models_state["wine"]
    write_state(data_dir, models_state, revision=3)
    assert models.refresh() == ["wine"] and models.names() == ["diabetes"]
    assert models.refresh() == []


def test_no_state_yet_means_no_models(tmp_path):
    models = LocalModels(tmp_path)
    assert models.names() == [] and models.revision == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "unreadable agent state"),
        ('{"applied": []}', "not in the documented shape"),
        ('{"applied": {"models": {"m": {"primary": {"version": 1}}}}}', "needs version, sha256"),
        (
            '{"applied": {"models": {"m": {"primary": '
            '{"version": 1, "sha256": "../x", "size": 1, "format": "joblib"}}}}}',
            "not a sha256 digest",
        ),
    ],
)
def test_bad_state_files_are_refused(tmp_path, content, message):
    (tmp_path / "state.json").write_text(content)
    with pytest.raises(LoadFailed, match=message):
        LocalModels(tmp_path)
