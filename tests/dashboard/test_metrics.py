"""/metrics: request counts and latencies, and the fleet's figures read from the store."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from control_plane.context import get_store
from control_plane.policy_runner import run_policies
from control_plane.webhooks import deliver_due
from tests.dashboard.conftest import Fleet


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse /metrics into {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def test_requests_are_counted_and_timed_by_endpoint_and_status(client, fleet: Fleet):
    client.get("/no/such/page")
    client.open("/healthz", method="BREW")
    samples = scrape(client)
    heartbeat = labels(endpoint="agents.heartbeat", method="POST", status="200")
    assert samples[("tether_http_requests_total", heartbeat)] == 2
    assert samples[("tether_http_request_duration_seconds_count", heartbeat)] == 2
    bucket = ("tether_http_request_duration_seconds_bucket", labels(**dict(heartbeat), le="+Inf"))
    assert samples[bucket] == 2
    assert 0 < samples[("tether_http_request_duration_seconds_sum", heartbeat)] < 5
    unmatched = labels(endpoint="unmatched", method="GET", status="404")
    assert samples[("tether_http_requests_total", unmatched)] == 1
    odd = labels(endpoint="unmatched", method="other", status="405")
    assert samples[("tether_http_requests_total", odd)] == 1


def test_the_fleet_is_read_from_the_store(client, fleet: Fleet, admin_token):
    samples = scrape(client)
    expected = {"converged": 1, "lagging": 0, "failed": 1, "stale": 1}
    for state, count in expected.items():
        key = ("tether_agents", labels(environment="production", state=state))
        assert samples[key] == count
        assert samples[("tether_agents", labels(environment="staging", state=state))] == 0
    ratio = samples[("tether_environment_converged_ratio", labels(environment="production"))]
    assert ratio == pytest.approx(1 / 3)
    assert ("tether_environment_converged_ratio", labels(environment="staging")) not in samples
    assert samples[("tether_environment_revision", labels(environment="production"))] == 2
    assert samples[("tether_reports_received_total", ())] == 24  # 2 agents x 6 windows x 2 kinds
    for kind in ("promotion", "ready_to_promote", "rollback", "drift_alert"):
        assert samples[("tether_policy_actions_total", labels(kind=kind))] == 0


def test_policy_actions_and_webhook_deliveries_are_counted(app, client, fleet: Fleet):
    policy = {
        "promote": {"auto": True, "min_samples": 100, "min_agreement": 0.9},
        "drift": {
            "consecutive": 2,
            "webhooks": [{"url": "http://hooks.test/tether", "secret": "s3cret-s3cret-s3cret"}],
        },
    }
    response = fleet.api.send("PUT", "/api/v1/environments/production/policy", policy)
    assert response.status_code == 200
    scrape(client)  # counts the events seen so far (none), then only newer ones
    hooks = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204)))
    with app.app_context(), hooks:
        store = get_store()
        assert len(run_policies(store, app.extensions["tether"].artifacts)) == 2
        assert deliver_due(store, hooks) == 1
    for _ in range(2):  # a second scrape counts nothing twice
        samples = scrape(client)
        assert samples[("tether_policy_actions_total", labels(kind="promotion"))] == 1
        assert samples[("tether_policy_actions_total", labels(kind="drift_alert"))] == 1
        assert samples[("tether_webhook_deliveries_total", labels(outcome="delivered"))] == 1
        assert samples[("tether_webhook_deliveries_total", labels(outcome="failed"))] == 0


def test_metrics_need_no_token_and_show_no_secret(client, fleet: Fleet, admin_token):
    text = client.get("/metrics").get_data(as_text=True)
    secrets = [admin_token, fleet.viewer, *(agent["token"] for agent in fleet.agents.values())]
    for secret in secrets:
        assert secret not in text
    for prefix in ("tether_admin_", "tether_viewer_", "tether_agent_", "s3cret"):
        assert prefix not in text
