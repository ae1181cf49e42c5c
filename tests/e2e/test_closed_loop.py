"""The closed loop with real processes: shadow, promotion, rollback, drift alert, no report lost.

Two agents serve v1 with v2 in shadow on live traffic from the wine dataset; the control plane's
policy engine promotes v2, rolls back a v3 that fails its smoke test everywhere, and raises a
signed drift alert when traffic shifts. Then the control plane is killed mid-burst of reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from agent.local.outbox import Outbox
from common.drift import build_profile
from tests.support.agent_process import AgentProcess, eventually
from tests.support.models import train_wine, wine_frame
from tests.support.operator import Operator, joblib_bytes
from tests.support.processes import ServerProcess
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e
SECRET = "closed-loop-webhook-secret"
FEATURES, TARGET = wine_frame()
ROWS = FEATURES.to_dict("records")
SHIFTED = (FEATURES.assign(**{c: FEATURES[c] * 1.8 + 2 for c in FEATURES.columns[:8]})).to_dict(
    "records"
)
REPORTING = {"TETHER_REPORT_INTERVAL": "1", "TETHER_HEARTBEAT_INTERVAL": "0.5"}


def push(http: httpx.Client, model, example, with_profile: bool = True) -> int:
    profile = build_profile(FEATURES, predictions=model.predict(FEATURES)) if with_profile else None
    return Operator(http).push("wine", joblib_bytes(model), example=example, profile=profile)[
        "version"
    ]


def desired(http: httpx.Client) -> dict:
    return http.get("/api/v1/environments/production/desired").json()["models"]["wine"]


def converged_on(http: httpx.Client, version: int, agents: int = 2) -> dict | None:
    """Return the status once every agent serves `version` (None until then)."""
    status = http.get("/api/v1/environments/production/status").json()
    serving = [a["models"].get("wine", {}).get("actual") or {} for a in status["agents"]]
    done = len(serving) == agents and all(s.get("serving") == version for s in serving)
    return status if done else None


def traffic(agents: list[AgentProcess], rows: list[dict], stop: threading.Event) -> None:
    """Send one-row predictions round-robin until told to stop."""
    rng = random.Random(7)
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            for agent in agents:
                row = rows[rng.randrange(len(rows))]
                with contextlib.suppress(httpx.TransportError):
                    client.post(f"{agent.url}/predict/wine", json={"instances": [row]})
            time.sleep(0.01)


@pytest.fixture
def loop(tmp_path: Path):
    with (
        WebhookReceiver() as receiver,
        ServerProcess(tmp_path / "cp", env={"TETHER_POLICY_INTERVAL": "1"}) as server,
    ):
        http = httpx.Client(
            base_url=server.url,
            timeout=30,
            headers={"Authorization": f"Bearer {server.admin_token}"},
        )
        example = ROWS[:3]
        assert push(http, train_wine(c=1.0), example) == 1
        assert push(http, train_wine(c=0.7), example) == 2
        assert http.put("/api/v1/environments/production", json={}).status_code == 201
        policy = {
            "promote": {
                "auto": True,
                "min_samples": 150,
                "min_agreement": 0.9,
                "max_latency_ratio": 20,
                "max_error_rate": 0.05,
            },
            "rollback": {"failure_share": 0.5, "window_seconds": 600},
            "drift": {"consecutive": 2, "webhooks": [{"url": receiver.url, "secret": SECRET}]},
        }
        assert http.put("/api/v1/environments/production/policy", json=policy).status_code == 200
        assert (
            http.put(
                "/api/v1/environments/production/desired/wine", json={"version": 1, "shadow": 2}
            ).status_code
            == 200
        )
        token = http.post(
            "/api/v1/tokens", json={"role": "enrollment", "environment": "production"}
        ).json()["token"]
        agents = []
        for index in range(2):
            agent = AgentProcess(tmp_path / f"agent-{index}", env=REPORTING)
            agent.enroll(server.url, "production", token, hostname=f"host-{index}")
            agents.append(agent.start())
        try:
            yield server, http, agents, receiver
        finally:
            for agent in agents:
                agent.stop()
            http.close()


def test_shadow_promotion_rollback_drift_alert(loop):
    _, http, agents, receiver = loop
    assert eventually(lambda: converged_on(http, 1), timeout=60)

    # 1. Live traffic: the shadow's reports arrive and the agreeing v2 is promoted everywhere.
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(agents, ROWS, stop), daemon=True)
    sender.start()
    try:
        assert eventually(lambda: desired(http)["version"] == 2, timeout=90), http.get(
            "/api/v1/environments/production/shadow/wine"
        ).json()
    finally:
        stop.set()
        sender.join()
    shadow_reports = http.get("/api/v1/reports?kind=shadow").json()["reports"]
    assert len({r["agent_id"] for r in shadow_reports}) == 2
    agreement = [r["shadow"]["agreement"] for r in shadow_reports if r["shadow"]["shadowed"]]
    assert agreement and min(agreement) >= 0.8
    assert all(r["shadow"]["primary_latency"]["p50"] > 0 for r in shadow_reports)
    promotion = http.get("/api/v1/events?kind=promotion").json()["events"][0]
    assert promotion["details"]["figures"]["shadowed"] >= 150
    assert eventually(lambda: converged_on(http, 2), timeout=60)
    assert all(a.serving_version("wine", ROWS[:1]) == 2 for a in agents)

    # 2. A v3 that loads but fails its smoke test on every agent is rolled back and blocked.
    bad = push(http, train_wine(c=0.5), [{"alcohol": "strong"}], with_profile=False)
    assert (
        http.put("/api/v1/environments/production/desired/wine", json={"version": bad}).status_code
        == 200
    )
    assert eventually(lambda: desired(http) == {"version": 2, "shadow": None}, timeout=60)
    rollback = http.get("/api/v1/events?kind=rollback").json()["events"][0]
    assert rollback["version"] == bad
    assert len(rollback["details"]["figures"]["failed_agents"]) == 2
    blocked = http.get("/api/v1/environments/production/blocked").json()["blocked"]
    assert [(b["model"], b["version"]) for b in blocked] == [("wine", bad)]
    assert all(a.serving_version("wine", ROWS[:1]) == 2 for a in agents)

    # 3. Traffic from a shifted slice raises a drift alert, and the webhook gets it signed.
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(agents, SHIFTED, stop), daemon=True)
    sender.start()
    try:
        assert eventually(lambda: receiver.received, timeout=90)
    finally:
        stop.set()
        sender.join()
    headers, body = receiver.received[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Tether-Signature"] == expected
    payload = json.loads(body)
    assert payload["event"] == "drift_alert" and payload["version"] == 2
    assert set(payload["drifted_features"]) <= set(FEATURES.columns[:8])


def test_control_plane_killed_during_a_burst_of_reports_loses_none(loop):
    server, http, agents, _ = loop
    assert eventually(lambda: converged_on(http, 1), timeout=60)
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(agents, ROWS, stop), daemon=True)
    sender.start()
    try:
        eventually(lambda: len(http.get("/api/v1/reports").json()["reports"]) >= 4, timeout=30)
        server.stop(signal.SIGKILL)
        time.sleep(3)  # windows keep closing into the agents' outboxes meanwhile
        server.start()
        time.sleep(2)
    finally:
        stop.set()
        sender.join()
    outboxes = [Outbox(agent.data_dir / "outbox.db") for agent in agents]

    def all_delivered() -> list[dict] | None:
        if any(outbox.depth() for outbox in outboxes):
            return None
        return http.get("/api/v1/reports?kind=drift&limit=10000").json()["reports"]

    reports = eventually(all_delivered, timeout=60)
    for outbox in outboxes:
        outbox.close()
    assert len({r["id"] for r in reports}) == len(reports)  # none stored twice
    by_agent = {r["agent_id"] for r in reports}
    assert len(by_agent) == 2
    for agent_id in by_agent:
        own = sorted(
            (r for r in reports if r["agent_id"] == agent_id), key=lambda r: r["window_start"]
        )
        assert len(own) >= 6
        # Traffic never stopped, so every window had requests and was reported: a lost report
        # would leave a gap between one window's end and the next one's start.
        for previous, current in itertools.pairwise(own):
            assert previous["window_end"] == current["window_start"], (
                previous["id"],
                current["id"],
            )
