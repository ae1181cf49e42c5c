"""A real `tether server` with two workers: metrics add up across them, logs are clean JSON."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e
REQUESTS = 40


def test_two_workers_share_metrics_and_log_json_without_secrets(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, extra_args=["--workers", "2", "--log-format", "json"])
    with server:
        token = server.admin_token
        admin = {"Authorization": f"Bearer {token}"}
        # A new connection each time, so that both workers take some of them.
        for _ in range(REQUESTS):
            assert httpx.get(f"{server.url}/api/v1/models", headers=admin).status_code == 200
        httpx.get(f"{server.url}/api/v1/models", headers={"Authorization": "Bearer " + "x" * 40})
        text = httpx.get(f"{server.url}/metrics").text
        files = sorted(path.name for path in (data / "prometheus").iterdir())
    counts = {
        (sample.labels["endpoint"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "tether_http_requests"
        for sample in family.samples
        if sample.name == "tether_http_requests_total"
    }
    assert counts[("models.list_models", "200")] == REQUESTS
    assert counts[("models.list_models", "401")] == 1
    assert any(name.startswith("counter_") for name in files), files
    assert token not in text

    log = server.log().splitlines()
    assert log, "the server logged nothing"
    for line in log:
        entry = json.loads(line)  # every line is one JSON event
        assert {"time", "level", "logger", "message"} <= set(entry)
    assert token not in server.log()
    assert any("first admin token" in json.loads(line)["message"] for line in log)
