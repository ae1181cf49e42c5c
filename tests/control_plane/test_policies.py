"""The policy engine: promotion, rollback with blocking, drift alerts with signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from common.drift import build_profile
from common.policy import PromotePolicy
from common.reports import ShadowTotals
from control_plane.context import get_store, state
from control_plane.policies import decide_promotion
from control_plane.policy_runner import run_policies
from control_plane.webhooks import deliver_due
from tests.support.api import Api, assert_error
from tests.support.models import wine_frame
from tests.support.reports import drift_report, shadow_report
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture(scope="module")
def wine_profile():
    features, _ = wine_frame()
    return build_profile(features)


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes, wine_profile) -> Api:
    api.create_env("production")
    for index in range(3):
        response = api.client.post(
            "/api/v1/models/wine/versions",
            data={
                "artifact": (io.BytesIO(wine_model_bytes + bytes([index])), "wine.joblib"),
                "metadata": "{}",
                "reference_profile": (
                    io.BytesIO(wine_profile.model_dump_json().encode()),
                    "p.json",
                ),
            },
            headers=api.headers(),
            content_type="multipart/form-data",
        )
        assert response.status_code == 201
    api.set_desired("production", "wine", 1, 2)
    return api


def run_engine(app) -> list[int]:
    with app.app_context():
        return run_policies(get_store(), state().artifacts)


def set_policy(api: Api, policy: dict) -> None:
    response = api.send("PUT", "/api/v1/environments/production/policy", policy)
    assert response.status_code == 200, response.get_json()


def send(api: Api, agent: dict, reports: list[dict]) -> None:
    response = api.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/reports",
        {"reports": reports},
        token=agent["token"],
    )
    assert response.status_code == 200


def desired(api: Api) -> dict:
    return api.get("/api/v1/environments/production/desired").get_json()["models"]["wine"]


@pytest.mark.parametrize(
    ("totals", "fire", "why"),
    [
        (ShadowTotals(shadowed=100, agreement=1.0), False, "samples"),
        (ShadowTotals(shadowed=600, agreement=0.90), False, "agreement 0.9000 < 0.98"),
        (ShadowTotals(shadowed=600, agreement=0.99, latency_ratio=2.0), False, "latency ratio"),
        (ShadowTotals(shadowed=600, agreement=0.99, error_rate=0.05), False, "error rate"),
        (ShadowTotals(shadowed=600, agreement=0.99, latency_ratio=1.1), True, "agreement 0.9900"),
        (
            ShadowTotals(shadowed=600, agreement=0.5, primary_accuracy=0.9, shadow_accuracy=0.95),
            True,
            "shadow accuracy",
        ),
        (
            ShadowTotals(shadowed=600, agreement=0.99, primary_accuracy=0.9, shadow_accuracy=0.8),
            False,
            "shadow accuracy 0.8000 < 0.8900",
        ),
    ],
)
def test_promotion_rule(totals, fire, why):
    decision = decide_promotion(PromotePolicy(min_samples=500), totals)
    assert decision.fire is fire
    assert why in decision.explain()


def test_auto_promotion_acts_once_and_is_audited(world: Api, app):
    set_policy(world, {"promote": {"auto": True, "min_samples": 500, "min_agreement": 0.98}})
    agents = [world.enroll("production", f"h{i}") for i in range(2)]
    send(world, agents[0], [shadow_report("wine", 1, 2, shadowed=300, agreed=299)])
    assert run_engine(app) == []  # 300 samples: not enough yet
    send(world, agents[1], [shadow_report("wine", 1, 2, shadowed=300, agreed=297)])
    events = run_engine(app)
    assert len(events) == 1
    assert run_engine(app) == []  # idempotent
    assert desired(world) == {"version": 2, "shadow": None}
    history = world.get("/api/v1/environments/production/history").get_json()["entries"]
    assert (history[0]["action"], history[0]["actor"]) == ("promote", "policy:promote")
    assert "agreement 0.9933" in history[0]["reason"]
    event = world.get("/api/v1/events?kind=promotion").get_json()["events"][0]
    assert event["details"]["figures"]["shadowed"] == 600


def test_manual_promotion_policy_raises_ready_to_promote_once(world: Api, app):
    set_policy(world, {"promote": {"auto": False, "min_samples": 10}})
    agent = world.enroll("production")
    send(world, agent, [shadow_report("wine", 1, 2, shadowed=50, agreed=50)])
    assert len(run_engine(app)) == 1
    assert run_engine(app) == []
    assert desired(world) == {"version": 1, "shadow": 2}
    kinds = [e["kind"] for e in world.get("/api/v1/events").get_json()["events"]]
    assert kinds == ["ready_to_promote"]


def test_rollback_restores_previous_and_blocks_the_failed_version(world: Api, app):
    set_policy(
        world,
        {
            "rollback": {"failure_share": 0.5, "window_seconds": 600},
            "promote": {"auto": True, "min_samples": 1},
        },
    )
    world.set_desired("production", "wine", 3, 2)  # previous primary: 1
    agents = [world.enroll("production", f"h{i}") for i in range(3)]
    failing = {
        "applied_revision": 1,
        "models": {
            "wine": {
                "serving": 1,
                "status": "failed",
                "stage": "smoke_test",
                "target": 3,
                "error": "smoke test: predictions contain NaN",
            }
        },
    }
    healthy = {"applied_revision": 2, "models": {"wine": {"serving": 3, "shadow": 2}}}
    for agent, beat in zip(agents, (failing, failing, healthy), strict=True):
        world.send(
            "POST", f"/api/v1/agents/{agent['agent_id']}/heartbeat", beat, token=agent["token"]
        )
    assert len(run_engine(app)) == 1
    assert run_engine(app) == []
    assert desired(world) == {"version": 1, "shadow": None}
    event = world.get("/api/v1/events?kind=rollback").get_json()["events"][0]
    assert event["version"] == 3
    assert sorted(event["details"]["figures"]["failed_agents"]) == sorted(
        a["agent_id"] for a in agents[:2]
    )
    blocked = world.get("/api/v1/environments/production/blocked").get_json()["blocked"]
    assert blocked == [{"model": "wine", "version": 3, "reason": blocked[0]["reason"]}]
    # A blocked version is never promoted automatically, however good its reports.
    world.set_desired("production", "wine", 1, 3)
    send(world, agents[2], [shadow_report("wine", 1, 3, shadowed=900, agreed=900)])
    assert run_engine(app) == []
    assert desired(world) == {"version": 1, "shadow": 3}
    cleared = world.send("DELETE", "/api/v1/environments/production/blocked/wine/3")
    assert cleared.status_code == 200
    assert len(run_engine(app)) == 1
    assert desired(world) == {"version": 3, "shadow": None}


def test_drift_alert_after_consecutive_windows_posts_a_signed_webhook(
    world: Api, app, wine_profile
):
    features, _ = wine_frame()
    shifted = features.copy()
    shifted[features.columns[:8]] = shifted[features.columns[:8]] * 1.8 + 2
    with WebhookReceiver() as receiver:
        set_policy(
            world,
            {
                "drift": {
                    "consecutive": 2,
                    "webhooks": [{"url": receiver.url, "secret": "s3cret-s3cret-s3cret"}],
                }
            },
        )
        agent = world.enroll("production")
        start = datetime.now(UTC) - timedelta(minutes=10)
        send(
            world,
            agent,
            [
                drift_report(
                    wine_profile, features.sample(120, random_state=1), "wine", 1, end=start
                )
            ],
        )
        send(
            world,
            agent,
            [
                drift_report(
                    wine_profile,
                    shifted.sample(120, random_state=2),
                    "wine",
                    1,
                    end=start + timedelta(minutes=1),
                )
            ],
        )
        assert run_engine(app) == []  # one drifted window of two
        send(
            world,
            agent,
            [
                drift_report(
                    wine_profile,
                    shifted.sample(120, random_state=3),
                    "wine",
                    1,
                    end=start + timedelta(minutes=2),
                )
            ],
        )
        events = run_engine(app)
        assert len(events) == 1
        assert run_engine(app) == []  # the same streak alerts once
        with app.app_context(), httpx.Client() as client:
            assert deliver_due(get_store(), client) == 1
        headers, body = receiver.received[0]
    payload = json.loads(body)
    assert payload["event"] == "drift_alert"
    assert (payload["environment"], payload["model"], payload["version"]) == (
        "production",
        "wine",
        1,
    )
    assert payload["drifted_features"]
    expected = "sha256=" + hmac.new(b"s3cret-s3cret-s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Tether-Signature"] == expected
    kinds = [e["kind"] for e in world.get("/api/v1/events").get_json()["events"]]
    assert kinds == ["webhook_delivery", "drift_alert"]


def test_a_drift_episode_alerts_once_however_its_reports_arrive_then_resolves(
    world: Api, app, wine_profile
):
    features, _ = wine_frame()
    shifted = features * 2 + 5
    set_policy(world, {"drift": {"consecutive": 2}})
    agents = [world.enroll("production", hostname=name) for name in ("a", "b")]
    start = datetime.now(UTC) - timedelta(minutes=30)
    minute = 0

    def window(agent: dict, frame, seed: int) -> None:
        end = start + timedelta(minutes=minute)
        sample = frame.sample(120, random_state=seed)
        send(world, agent, [drift_report(wine_profile, sample, "wine", 1, end=end)])

    def kinds() -> list[str]:
        return [e["kind"] for e in world.get("/api/v1/events").get_json()["events"]]

    # Windows come in one agent at a time, the engine running between any two of them, as it
    # does every few seconds while a fleet reports: the recency-aligned windows keep changing.
    alerts = []
    for minute in range(1, 6):
        for index, agent in enumerate(agents):
            window(agent, shifted, 10 * minute + index)
            alerts += run_engine(app)
    assert len(alerts) == 1 and kinds() == ["drift_alert"]

    minute = 6
    window(agents[0], features, 1)
    window(agents[1], features, 2)
    assert len(run_engine(app)) == 1 and run_engine(app) == []
    assert kinds() == ["drift_resolved", "drift_alert"]

    for minute in (7, 8):  # a new episode: it alerts again, once
        for index, agent in enumerate(agents):
            window(agent, shifted, 100 + 10 * minute + index)
            run_engine(app)
    assert kinds() == ["drift_alert", "drift_resolved", "drift_alert"]


def test_failed_webhook_is_retried_then_recorded(world: Api, app, wine_profile):
    features, _ = wine_frame()
    shifted = features * 2 + 5
    with WebhookReceiver(status=500) as receiver:
        set_policy(
            world,
            {
                "drift": {
                    "consecutive": 1,
                    "webhooks": [{"url": receiver.url, "secret": "another-long-secret"}],
                }
            },
        )
        agent = world.enroll("production")
        send(world, agent, [drift_report(wine_profile, shifted, "wine", 1)])
        assert len(run_engine(app)) == 1
        with app.app_context(), httpx.Client() as client:
            store = get_store()
            now = datetime.now(UTC)
            for attempt in range(5):
                deliver_due(store, client, now + timedelta(seconds=2**attempt + 1) * (attempt > 0))
                now += timedelta(seconds=2 ** (attempt + 1) + 1)
        assert len(receiver.received) == 5
    events = world.get("/api/v1/events?kind=webhook_delivery").get_json()["events"]
    assert len(events) == 1 and "failed after 5" in events[0]["message"]


BAD_POLICIES = [
    ({"promote": {"min_agreement": 1.5}}, "promote.min_agreement"),
    ({"promote": {"auto": "sometimes"}}, "promote.auto"),
    ({"rollback": {"failure_share": 0}}, "rollback.failure_share"),
    ({"drift": {"consecutive": 0}}, "drift.consecutive"),
    (
        {"drift": {"webhooks": [{"url": "ftp://x", "secret": "0123456789abcdef"}]}},
        "drift.webhooks.0.url",
    ),
    (
        {"drift": {"webhooks": [{"url": "http://127.0.0.1/x", "secret": "short"}]}},
        "drift.webhooks.0.secret",
    ),
    ({"promote": {}, "retrain": {}}, "retrain"),
]


@pytest.mark.parametrize(("policy", "field"), BAD_POLICIES)
def test_bad_policies_are_refused_and_keep_the_old_one(world: Api, policy, field):
    set_policy(world, {"promote": {"auto": True}})
    response = world.send("PUT", "/api/v1/environments/production/policy", policy)
    assert_error(response, 422, "invalid", field)
    shown = world.get("/api/v1/environments/production/policy").get_json()
    assert shown["promote"]["auto"] is True


def test_policy_hides_webhook_secrets(world: Api):
    set_policy(
        world, {"drift": {"webhooks": [{"url": "http://127.0.0.1:1/h", "secret": "x" * 20}]}}
    )
    shown = world.get("/api/v1/environments/production/policy").get_data(as_text=True)
    assert "x" * 20 not in shown
