"""An agent's /metrics, scraped from a real `tether agent run` fed by a real control plane.

The figures are checked against what the test did (requests sent, rows in them), against the
control plane's own records (artifact and profile sizes, the shadow's drops in its reports) and
against the agent's outbox file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from common.drift import build_profile
from tests.agent.metrics.scrape import scrape
from tests.agent.slow_model import SlowRegressor
from tests.support.agent_process import AgentProcess, eventually
from tests.support.models import train_wine, wine_frame
from tests.support.operator import Operator, joblib_bytes
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e

FEATURES, _ = wine_frame()
ROWS = FEATURES.to_dict("records")
ENV = "production"
# Every window is cut (and its reports sent) each second; one request waits for the shadow.
AGENT_ENV = {"TETHER_REPORT_INTERVAL": "1", "TETHER_SHADOW_QUEUE_SIZE": "1"}


def slow_pair() -> tuple[LinearRegression, SlowRegressor]:
    """A fast primary and a shadow that sleeps as long as each input's `sleep` feature asks."""
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "sleep": [0.0, 0.0, 0.0, 0.0]})
    return LinearRegression().fit(frame, [0.0, 1.0, 2.0, 3.0]), SlowRegressor()


def outbox_rows(data_dir: Path) -> int:
    """Count the reports in the agent's outbox file, read-only, while the agent runs."""
    with sqlite3.connect(f"file:{data_dir / 'outbox.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]


SLOW_EXAMPLE = [{"x": 1.0, "sleep": 0.0}]


@pytest.fixture
def fleet(tmp_path: Path):
    """A control plane serving wine v1 (with a profile) and slow v1 with v2 in shadow."""
    server = ServerProcess(tmp_path / "cp").start()
    http = httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {server.admin_token}"}
    )
    agent = AgentProcess(tmp_path / "agent", env=AGENT_ENV)
    try:
        profile = build_profile(FEATURES, predictions=train_wine().predict(FEATURES))
        operator = Operator(http)
        versions = {
            "wine": operator.push(
                "wine", joblib_bytes(train_wine()), example=ROWS[:3], profile=profile
            ),
            "slow": operator.push("slow", joblib_bytes(slow_pair()[0]), example=SLOW_EXAMPLE),
            "slow-shadow": operator.push(
                "slow", joblib_bytes(slow_pair()[1]), example=SLOW_EXAMPLE
            ),
        }
        assert http.put(f"/api/v1/environments/{ENV}", json={}).status_code == 201
        for model, body in (("wine", {"version": 1}), ("slow", {"version": 1, "shadow": 2})):
            response = http.put(f"/api/v1/environments/{ENV}/desired/{model}", json=body)
            assert response.status_code == 200, response.text
        token = http.post("/api/v1/tokens", json={"role": "enrollment", "environment": ENV})
        agent.enroll(server.url, ENV, token.json()["token"])
        agent.start()
        eventually(lambda: agent.serving_version("wine", ROWS[:1]) == 1, timeout=60)
        eventually(lambda: agent.serving_version("slow", [{"x": 1.0, "sleep": 0.0}]), timeout=60)
        yield server, http, agent, versions
    finally:
        agent.stop()
        http.close()
        server.stop()


def test_predictions_polls_downloads_and_shadow_drops_are_counted(fleet):
    _, http, agent, versions = fleet
    labels = {"model": "wine", "version": 1}
    # The fixture's readiness checks were predictions too: count from what they left.
    before = scrape(agent.url)
    calls = before.get("tether_agent_predictions_total", **labels)
    rows_before = before.get("tether_agent_predicted_rows_total", **labels)
    assert calls is not None and calls >= 1 and rows_before == calls

    batches = [ROWS[i : i + 1] for i in range(5)] + [ROWS[i : i + 4] for i in range(10, 22, 4)]
    for rows in batches:
        assert agent.predict("wine", rows).status_code == 200
    # A refused request reaches no model, so it is no prediction.
    assert agent.predict("wine", [{"alcohol": "strong"}]).status_code == 400

    after = scrape(agent.url)
    requests = calls + len(batches)
    assert after.get("tether_agent_predictions_total", **labels) == requests
    rows = rows_before + sum(map(len, batches))
    assert after.get("tether_agent_predicted_rows_total", **labels) == rows
    assert after.get("tether_agent_prediction_duration_seconds_count", **labels) == requests
    assert after.get("tether_agent_prediction_duration_seconds_bucket", le="+Inf", **labels) == (
        requests
    )
    assert 0 < after.get("tether_agent_prediction_duration_seconds_sum", **labels) < requests

    # Exactly the artifacts and the one reference profile of the manifest, each once.
    artifact_bytes = sum(version["artifact"]["size"] for version in versions.values())
    assert after.get("tether_agent_download_bytes_total", part="artifact") == artifact_bytes
    profile_bytes = versions["wine"]["reference_profile"]["size"]
    assert after.get("tether_agent_download_bytes_total", part="profile") == profile_bytes

    # The desired state was set before the agent started: one new manifest, then 304s.
    polls = after.labelled("tether_agent_polls_total", "outcome")
    assert polls["changed"] == 1
    assert polls["not_modified"] >= 1
    assert polls["unreachable"] == polls["rejected"] == polls["refused"] == polls["error"] == 0

    # The shadow sleeps 0.3 s a request and one request may wait: a quick burst overflows it.
    for _ in range(8):
        assert agent.predict("slow", [{"x": 2.0, "sleep": 0.3}]).status_code == 200

    def drops_match_reports() -> float | None:
        reports = http.get("/api/v1/reports", params={"kind": "shadow", "model": "slow"}).json()
        reported = sum(report["shadow"]["dropped"] for report in reports["reports"])
        counted = scrape(agent.url).get("tether_agent_shadow_dropped_rows_total", model="slow")
        return counted if counted == reported and reported > 0 else None

    dropped = eventually(drops_match_reports, timeout=30)
    assert dropped <= 7  # the first request always reaches the shadow
    assert eventually(lambda: scrape(agent.url).get("tether_agent_shadow_queue_depth") == 0)


def test_outbox_depth_follows_the_reports_waiting_for_the_control_plane(fleet, tmp_path):
    server, _, agent, _ = fleet
    # Sent reports leave the outbox within a window once the control plane answers.
    assert eventually(lambda: scrape(agent.url).get("tether_agent_outbox_depth") == 0)
    server.stop()
    for index in range(3):
        assert agent.predict("wine", ROWS[index : index + 1]).status_code == 200

    def waiting() -> float | None:
        depth = scrape(agent.url).get("tether_agent_outbox_depth")
        return depth if depth and depth == outbox_rows(tmp_path / "agent") else None

    # No traffic after these: later windows are empty and add no report, so the depth holds.
    assert eventually(waiting, timeout=30) >= 1
    unreachable = scrape(agent.url).get("tether_agent_polls_total", outcome="unreachable")
    assert unreachable is not None and unreachable >= 1

    server.start()
    assert eventually(lambda: scrape(agent.url).get("tether_agent_outbox_depth") == 0, timeout=30)
    assert outbox_rows(tmp_path / "agent") == 0
