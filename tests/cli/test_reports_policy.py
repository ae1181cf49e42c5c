"""`tether reports`, `tether events`, `tether policy` and `model push --reference`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.models import train_wine, wine_frame
from tests.support.reports import shadow_report


@pytest.fixture
def wine(tmp_path: Path) -> Path:
    import joblib

    path = tmp_path / "wine.joblib"
    joblib.dump(train_wine(), path)
    return path


@pytest.fixture
def training_csv(tmp_path: Path) -> Path:
    features, target = wine_frame()
    path = tmp_path / "train.csv"
    features.assign(label=target).to_csv(path, index=False)
    return path


def test_push_with_reference_stores_a_profile_of_data_and_predictions(
    tether, api, wine, training_csv
):
    pushed = tether.json(
        "model", "push", "wine", str(wine), "--reference", str(training_csv), "--target", "label"
    )
    assert pushed["reference_profile"]["size"] > 1000
    profile = json.loads(api.get("/api/v1/models/wine/versions/1/profile").data)
    features, _ = wine_frame()
    assert set(profile["features"]) == set(features.columns)
    assert profile["predictions"]  # the model's predictions on the training data are profiled


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "nope"], "'nope' is not a column"),
        ([], "lacks the model's features"),
    ],
)
def test_push_with_unusable_reference_sends_nothing(tether, api, wine, tmp_path, extra, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = tether.run(
        "model", "push", "wine", str(wine), "--reference", str(bad), *extra, ok=False
    )
    assert message in result.output
    assert api.get("/api/v1/models").get_json()["models"] == []


def test_reports_and_events_commands(tether, api, wine, training_csv):
    tether.run(
        "model",
        "push",
        "wine",
        str(wine),
        "--reference",
        str(training_csv),
        "--target",
        "label",
        ok=True,
    )
    tether.run("model", "push", "wine", str(wine), ok=True)
    tether.run("env", "create", "production", ok=True)
    tether.run("env", "set", "production", "wine", "1", "--shadow", "2", ok=True)
    agent = api.enroll("production")
    api.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/reports",
        {"reports": [shadow_report("wine", 1, 2, shadowed=200, agreed=196)]},
        token=agent["token"],
    )
    shadow = tether.run("reports", "shadow", "production", "wine", ok=True).stdout
    assert "0.9800" in shadow and "fleet" in shadow
    assert tether.json("reports", "shadow", "production", "wine")["fleet"]["shadowed"] == 200
    drift = tether.run("reports", "drift", "production", "wine", ok=True).stdout
    assert "no drift windows reported yet" in drift
    assert "No events." in tether.run("events", ok=True).stdout


def test_policy_set_and_show(tether, api, tmp_path: Path):
    tether.run("env", "create", "production", ok=True)
    document = tmp_path / "policy.json"
    document.write_text(
        json.dumps(
            {
                "promote": {"auto": True, "min_samples": 10},
                "drift": {"webhooks": [{"url": "http://127.0.0.1:9/h", "secret": "x" * 24}]},
            }
        )
    )
    out = tether.run("policy", "set", "production", str(document), ok=True).stdout
    assert "promote, drift" in out
    shown = tether.json("policy", "show", "production")
    assert shown["promote"]["min_samples"] == 10
    assert shown["drift"]["webhooks"][0]["secret"] == "*" * 16


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"promote": {"min_agreement": 3}}', "promote.min_agreement"),
        ('{"surprise": {}}', "surprise"),
    ],
)
def test_bad_policy_files_change_nothing(tether, api, tmp_path: Path, content, message):
    tether.run("env", "create", "production", ok=True)
    document = tmp_path / "policy.json"
    document.write_text(content)
    result = tether.run("policy", "set", "production", str(document), ok=False)
    assert message in result.output
    assert api.get("/api/v1/environments/production/policy").get_json() == {
        "promote": None,
        "rollback": None,
        "drift": None,
    }


@pytest.mark.parametrize(
    "args",
    [
        ["reports", "drift", "Bad Env", "wine"],
        ["reports", "shadow", "production", "../x"],
        ["reports", "drift", "nowhere", "wine"],
        ["events", "--kind", "gossip"],
        ["policy", "show", "nowhere"],
    ],
)
def test_bad_report_and_policy_arguments(tether, args):
    tether.run("env", "create", "production", ok=True)
    result = tether.run(*args, ok=False)
    assert result.output.strip()
