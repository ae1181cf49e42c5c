"""`tether model push|list|show` against the in-process app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.checkouts import git, make_checkout
from tests.support.models import wine_frame

WINE_FEATURES = list(wine_frame()[0].columns)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout with one commit, as the current directory."""
    repo = make_checkout(tmp_path / "repo")
    monkeypatch.chdir(repo)
    return repo


def test_push_records_revision_schema_example_and_metadata(tether, api, checkout, wine_model_file):
    example = [{"alcohol": 13.2, "proline": 1065}, {"alcohol": 12.4, "proline": 880}]
    pushed = tether.json(
        "model",
        "push",
        "wine",
        str(wine_model_file),
        "--input-example",
        json.dumps(example),
        "--metadata",
        '{"metrics": {"accuracy": 0.97}, "tags": {"team": "ml"}}',
    )
    assert pushed["version"] == 1
    assert pushed["artifact"]["format"] == "joblib"
    assert pushed["artifact"]["size"] == wine_model_file.stat().st_size
    assert pushed["code_revision"] == git(checkout, "rev-parse", "HEAD")
    assert [feature["name"] for feature in pushed["input_schema"]] == WINE_FEATURES
    types = {feature["name"]: feature["type"] for feature in pushed["input_schema"]}
    assert types["proline"] == "integer" and types["alcohol"] == "number"
    assert types["hue"] == "number"  # not in the example: the default
    assert pushed["input_example"] == example
    assert pushed["metrics"] == {"accuracy": 0.97} and pushed["tags"] == {"team": "ml"}
    # --json prints exactly what the API holds.
    assert api.get("/api/v1/models/wine/versions/1").get_json() == pushed


def test_push_marks_a_changed_checkout_dirty(tether, checkout, wine_model_file):
    (checkout / "train.py").write_text("print('changed')\n")
    pushed = tether.json("model", "push", "wine", str(wine_model_file))
    assert pushed["code_revision"] == git(checkout, "rev-parse", "HEAD") + "-dirty"


def test_push_outside_git_records_no_revision(tether, tmp_path, monkeypatch, wine_model_file):
    monkeypatch.chdir(tmp_path)
    pushed = tether.json("model", "push", "wine", str(wine_model_file))
    assert pushed["code_revision"] is None
    assert len(pushed["input_schema"]) == len(WINE_FEATURES)


def test_metadata_keys_win_over_what_push_finds(tether, checkout, wine_model_file):
    given = {
        "code_revision": "v1.2.3",
        "input_schema": [{"name": "x", "type": "string"}],
        "description": "baseline",
    }
    pushed = tether.json(
        "model", "push", "wine", str(wine_model_file), "--metadata", json.dumps(given)
    )
    assert pushed["code_revision"] == "v1.2.3"
    assert pushed["input_schema"] == [{"name": "x", "type": "string"}]
    assert pushed["description"] == "baseline"


def test_metadata_and_example_from_files(tether, tmp_path, monkeypatch, wine_model_file):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "meta.json").write_text('{"params": {"C": 1.0}}')
    (tmp_path / "example.json").write_text('{"alcohol": 13.0, "color": "red", "ok": true}')
    pushed = tether.json(
        "model",
        "push",
        "wine",
        str(wine_model_file),
        "--metadata",
        "@meta.json",
        "--input-example",
        "@example.json",
    )
    assert pushed["params"] == {"C": 1.0}
    assert pushed["input_example"] == [{"alcohol": 13.0, "color": "red", "ok": True}]


def test_schema_from_the_example_when_the_model_has_no_names(tether, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import joblib
    from sklearn.linear_model import LinearRegression

    model_file = tmp_path / "plain.joblib"
    joblib.dump(LinearRegression().fit([[1, 2], [2, 1], [3, 3]], [1, 2, 3]), model_file)
    example = '[{"rooms": 3, "area": 70.5, "city": "Lyon", "garden": false}]'
    pushed = tether.json("model", "push", "flats", str(model_file), "--input-example", example)
    assert pushed["input_schema"] == [
        {"name": "rooms", "type": "integer"},
        {"name": "area", "type": "number"},
        {"name": "city", "type": "string"},
        {"name": "garden", "type": "boolean"},
    ]


@pytest.mark.parametrize(
    ("filename", "flag", "expected"),
    [
        ("wine.skops", [], "skops"),
        ("wine.pkl", [], "joblib"),
        ("wine.joblib", ["--format", "skops"], "skops"),
    ],
)
def test_format_defaults_from_the_extension(
    tether, tmp_path, monkeypatch, wine_model_file, filename, flag, expected
):
    monkeypatch.chdir(tmp_path)
    artifact = tmp_path / filename
    shutil.copy(wine_model_file, artifact)
    pushed = tether.json("model", "push", "wine", str(artifact), *flag)
    assert pushed["artifact"]["format"] == expected
    # Only joblib files are unpickled to find feature names.
    assert (pushed["input_schema"] is not None) == (expected == "joblib")


def test_push_a_file_joblib_cannot_load_still_pushes(tether, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blob = tmp_path / "blob.joblib"
    blob.write_bytes(b"not a pickle at all")
    result = tether.run("model", "push", "blob", str(blob), ok=True)
    assert "could not load blob.joblib" in result.stderr
    assert "Pushed blob v1 (joblib, 19 B" in result.stdout


def test_push_for_people(tether, tmp_path, monkeypatch, wine_model_file):
    monkeypatch.chdir(tmp_path)
    result = tether.run("model", "push", "wine", str(wine_model_file), ok=True)
    assert result.stdout.startswith("Pushed wine v1 (joblib, ")
    assert "code revision: -" in result.stdout
    assert f"input schema:  {len(WINE_FEATURES)} feature(s)" in result.stdout


def test_list_and_show(tether, api, wine_model_bytes):
    assert "No models yet" in tether.run("model", "list", ok=True).stdout
    api.operator.push("wine", wine_model_bytes, {"input_schema": [{"name": "alcohol"}]})
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("iris", wine_model_bytes)
    api.create_env("staging")
    api.set_desired("staging", "wine", 1, 2)

    lines = tether.run("model", "list", ok=True).stdout.splitlines()
    assert lines[0].split() == ["MODEL", "LATEST", "VERSIONS", "CREATED"]
    assert [line.split()[:3] for line in lines[1:]] == [["iris", "v1", "1"], ["wine", "v2", "2"]]
    assert tether.json("model", "list") == api.get("/api/v1/models").get_json()

    shown = tether.run("model", "show", "wine", ok=True).stdout
    assert "Model wine: 2 version(s), latest v2" in shown
    assert any(line.split() == ["staging", "v1", "v2"] for line in shown.splitlines())
    assert tether.json("model", "show", "wine") == api.get("/api/v1/models/wine").get_json()

    one = tether.run("model", "show", "wine", "1", ok=True).stdout
    assert "version        v1" in one
    assert any(line.split() == ["alcohol", "number"] for line in one.splitlines())
    assert (
        tether.json("model", "show", "wine", "2")
        == api.get("/api/v1/models/wine/versions/2").get_json()
    )
