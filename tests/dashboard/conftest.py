"""Fixtures: a control plane with a realistic fleet (models, agents, reports), signed-in clients."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.drift import ReferenceProfile, build_profile
from tests.support.api import Api
from tests.support.models import wine_frame
from tests.support.reports import drift_report, shadow_report

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WINDOWS = 6


@pytest.fixture(scope="session")
def wine_profile() -> ReferenceProfile:
    features, _ = wine_frame()
    return build_profile(features)


def csrf_of(html: str) -> str:
    """Return the CSRF token of the first form on a page."""
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: Any, token: str) -> Any:
    """Sign `client` in through the form, as a person would."""
    form = client.get("/login")
    assert form.status_code == 200
    return client.post(
        "/login", data={"token": token, "csrf_token": csrf_of(form.get_data(as_text=True))}
    )


def heartbeat(api: Api, agent: dict, revision: int, models: dict[str, dict]) -> None:
    response = api.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/heartbeat",
        {
            "hostname": agent["hostname"],
            "applied_revision": revision,
            "models": models,
            "labels": {"zone": "eu-1"},
            "agent_version": "0.1.0",
        },
        token=agent["token"],
    )
    assert response.status_code == 200, response.get_json()


def post_reports(api: Api, agent: dict, reports: list[dict]) -> None:
    response = api.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/reports",
        {"reports": reports},
        token=agent["token"],
    )
    assert response.status_code == 200, response.get_json()


@dataclass
class Fleet:
    """What `fleet` built, for assertions."""

    api: Api
    viewer: str
    agents: dict[str, dict]
    revision: int


@pytest.fixture
def fleet(api: Api, wine_model_bytes: bytes, wine_profile: ReferenceProfile) -> Fleet:
    return build_fleet(api, wine_model_bytes, wine_profile)


def build_fleet(api: Api, wine_model_bytes: bytes, wine_profile: ReferenceProfile) -> Fleet:
    """Production runs wine v1 with v2 in shadow on three agents: converged, failed, stale.

    Two agents report six drift windows each, five minutes apart; the inputs of the newest three
    are shifted, so the fleet drifts there. They also report shadow comparisons.
    """
    api.create_env("production")
    api.create_env("staging")
    api.operator.push(
        "wine",
        wine_model_bytes,
        {
            "code_revision": "3f2c9ab",
            "training_data_fingerprint": "sha256:wine-2024-05",
            "metrics": {"accuracy": 0.972},
            "tags": {"team": "vision"},
        },
        profile=wine_profile,
        filename="wine.joblib",
    )
    api.operator.push(
        "wine",
        wine_model_bytes + b"2",
        {"code_revision": "9d1e07c"},
        profile=wine_profile,
        filename="wine.joblib",
    )
    assert api.set_desired("production", "wine", 1).status_code == 200
    state = api.set_desired("production", "wine", 1, 2).get_json()
    revision = state["revision"]
    agents = {}
    for name in ("host-a", "host-b", "host-c"):
        enrolled = api.enroll("production", name)
        agents[name] = {**enrolled, "hostname": name}
    heartbeat(api, agents["host-a"], revision, {"wine": {"serving": 1, "shadow": 2}})
    heartbeat(
        api,
        agents["host-b"],
        revision,
        {
            "wine": {
                "serving": 1,
                "status": "failed",
                "error": "smoke test failed: shape (1, 12)",
                "stage": "smoke_test",
                "target": 2,
            }
        },
    )
    # host-c never sends a heartbeat: it is stale.
    features, _ = wine_frame()
    now = datetime.now(UTC)
    for offset, name in enumerate(("host-a", "host-b")):
        batch = []
        for k in range(WINDOWS):
            end = now - timedelta(minutes=5 * (WINDOWS - 1 - k), seconds=offset)
            rows = features.sample(60, random_state=k * 7 + offset)
            if k >= WINDOWS - 3:
                rows = rows * 1.25  # the newest windows drift
            batch.append(drift_report(wine_profile, rows, "wine", 1, end=end))
            batch.append(
                shadow_report(
                    "wine",
                    1,
                    2,
                    shadowed=200,
                    agreed=196 - k,
                    end=end,
                    primary_p95=2.0 + k * 0.1,
                    shadow_p95=2.4 + k * 0.1,
                )
            )
        post_reports(api, agents[name], batch)
    viewer = api.create_token("viewer", description="dashboard tests")
    return Fleet(api, viewer, agents, revision)


@pytest.fixture
def admin_browser(app, admin_token):
    client = app.test_client()
    assert sign_in(client, admin_token).status_code == 302
    return client


@pytest.fixture
def viewer_browser(app, fleet: Fleet):
    client = app.test_client()
    assert sign_in(client, fleet.viewer).status_code == 302
    return client
