"""No secret anywhere a control plane and an agent write, with both logging JSON at debug level.

Both run as real processes. Everything they print (stdout and stderr of `tether server`,
`tether agent enroll` and `tether agent run`) and every /metrics body of both is searched for
the admin, enrollment and agent tokens and for the private keys (the control plane's signing
key and the agent's own), as PEM and as raw bytes in base64; every log line must be JSON.
"""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from common.drift import build_profile
from common.signing import load_private_key_pem
from tests.support.agent_process import AgentProcess, eventually
from tests.support.models import train_wine, wine_frame
from tests.support.processes import ServerProcess
from tests.support.registry import push_version

pytestmark = pytest.mark.e2e

FEATURES, TARGET = wine_frame()
ROWS = FEATURES.to_dict("records")
JSON_LOGS = ["--log-format", "json"]
DEBUG = {"TETHER_LOG_LEVEL": "debug"}


def key_secrets(pem_file: Path) -> dict[str, str]:
    """Name every form of a private key that must never show: PEM, its body, raw base64."""
    pem = pem_file.read_text()
    raw = load_private_key_pem(pem.encode()).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    body = "".join(pem.strip().splitlines()[1:-1])
    return {
        f"{pem_file.name} PEM": pem.strip(),
        f"{pem_file.name} PEM body": body,
        f"{pem_file.name} raw base64": base64.b64encode(raw).decode().rstrip("="),
        f"{pem_file.name} raw urlsafe base64": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        f"{pem_file.name} raw hex": raw.hex(),
    }


def test_no_secret_in_any_log_line_output_or_metrics_body(tmp_path: Path):
    server = ServerProcess(tmp_path / "cp", env=DEBUG, extra_args=JSON_LOGS).start()
    agent = AgentProcess(
        tmp_path / "agent", env={**DEBUG, "TETHER_REPORT_INTERVAL": "0.5"}, extra_args=JSON_LOGS
    )
    bodies: list[str] = []
    admin = server.admin_token
    http = httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {admin}"}
    )
    try:
        first = train_wine()
        profile = build_profile(FEATURES, predictions=first.predict(FEATURES))
        push_version(http, "wine", first, ROWS[:3], profile)
        push_version(http, "wine", train_wine(c=0.3), ROWS[:3])
        assert http.put("/api/v1/environments/production", json={}).status_code == 201
        desired = {"version": 1, "shadow": 2}
        assert http.put("/api/v1/environments/production/desired/wine", json=desired).is_success
        enrollment = http.post(
            "/api/v1/tokens", json={"role": "enrollment", "environment": "production"}
        ).json()["token"]
        agent.enroll(server.url, "production", enrollment)
        agent.start()
        eventually(lambda: agent.serving_version("wine", ROWS[:1]) == 1, timeout=60)

        # Traffic, feedback and shadow runs, and requests that carry tokens where they must not:
        # in a query string, and as a bearer that is refused.
        for index in range(20):
            response = agent.predict("wine", ROWS[index : index + 1])
            label = {"request_id": response.json()["request_id"], "label": int(TARGET[index])}
            assert httpx.post(f"{agent.url}/feedback/wine", json=label).status_code == 202
        refused = httpx.get(
            f"{server.url}/api/v1/models",
            params={"token": enrollment},
            headers={"Authorization": f"Bearer {admin}-revoked"},
        )
        assert refused.status_code == 401
        eventually(lambda: http.get("/api/v1/reports").json()["reports"], timeout=30)
        for url in (server.url, agent.url):
            response = httpx.get(f"{url}/metrics")
            assert response.status_code == 200
            bodies.append(response.text)

        # The control plane away: the agent logs its failed polls and keeps its reports.
        server.stop(signal.SIGTERM)
        agent.predict("wine", ROWS[:1])
        eventually(lambda: '"control plane unreachable' in agent.log(), timeout=30)
        bodies.append(httpx.get(f"{agent.url}/metrics").text)
    finally:
        http.close()
        agent.stop()
        server.stop()

    agent_token = json.loads((agent.data_dir / "identity.json").read_text())["token"]
    secrets = {"admin token": admin, "enrollment token": enrollment, "agent token": agent_token}
    for pem_file in [
        *sorted((server.data_dir / "keys").glob("*.pem")),
        agent.data_dir / "agent-key.pem",
    ]:
        secrets.update(key_secrets(pem_file))
    assert len(secrets) == 3 + 5 * 2  # one signing key and the agent's key were found

    logs = {"control plane": server.log(), "agent": agent.log()}
    outputs = {**logs, "agent enroll": agent.enroll_output}
    outputs.update({f"/metrics body {number}": body for number, body in enumerate(bodies)})
    for where, text in outputs.items():
        for name, secret in secrets.items():
            assert secret not in text, f"the {name} is in the {where}"

    for where, text in logs.items():
        lines = text.splitlines()
        assert len(lines) >= 10, f"the {where} logged only {len(lines)} lines"
        for line in lines:
            entry = json.loads(line)  # raises on any line that is not JSON
            assert {"time", "level", "logger", "message"} <= set(entry), line
    # The events that were logged are the ones expected, so the search above saw real logs.
    agent_events = [json.loads(line)["message"] for line in logs["agent"].splitlines()]
    assert any("manifest revision 1 accepted" in message for message in agent_events)
    assert any("verified and cached" in message for message in agent_events)
    assert "tether_agent_predictions_total" in bodies[1]
    assert "tether_http_requests_total" in bodies[0]
