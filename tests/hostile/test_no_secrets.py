"""No secret in any log line, process output, error body or /metrics, after one end-to-end run.

A real control plane and a real agent, both logging JSON at debug level, go through enrollment
(`tether agent enroll`), manifest, artifact download, load, serving, feedback, shadow runs,
heartbeats and reports, requests refused with every kind of wrong token, and the control plane
going away. Then every token (admin, viewer, enrollment, agents') and every private key (the
control plane's signing keys and the agent's own, as PEM, PEM body and lines, raw base64 and hex)
is looked for in everything either side wrote or answered: the output of `tether server`,
`tether agent enroll` and `tether agent run`, every error body, every /metrics body of both. And
every log line of both sides must be a JSON object.
"""

from __future__ import annotations

import base64
import json
import signal
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from common.drift import build_profile
from common.signing import load_private_key_pem
from tests.hostile.conftest import World, seed
from tests.support.agent_process import AgentProcess, eventually
from tests.support.models import train_wine, wine_frame
from tests.support.operator import Operator, joblib_bytes
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e

FEATURES, TARGET = wine_frame()
ROWS = FEATURES.to_dict("records")
JSON_LOGS = ["--log-format", "json"]
DEBUG = {"TETHER_LOG_LEVEL": "debug"}


@dataclass
class Run:
    """What one end-to-end run left: the secrets it used, and everything written or answered."""

    secrets: dict[str, str]
    logs: dict[str, str]  # the stdout and stderr of `tether server` and `tether agent run`
    places: dict[str, str]  # the logs, the enroll output, every error and /metrics body


def key_secrets(pem_file: Path) -> dict[str, str]:
    """Name every form of a private key that must never show: PEM, its body and lines, raw."""
    pem = pem_file.read_text()
    raw = load_private_key_pem(pem.encode()).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    lines = pem.strip().splitlines()[1:-1]
    forms = {
        f"{pem_file.name} PEM": pem.strip(),
        f"{pem_file.name} PEM body": "".join(lines),
        f"{pem_file.name} raw base64": base64.b64encode(raw).decode().rstrip("="),
        f"{pem_file.name} raw urlsafe base64": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        f"{pem_file.name} raw hex": raw.hex(),
    }
    forms.update({f"{pem_file.name} PEM line {i}": line for i, line in enumerate(lines)})
    return forms


def private_keys(folder: Path) -> list[Path]:
    """Every PEM file under `folder` that holds a private key."""
    return sorted(p for p in folder.rglob("*.pem") if "PRIVATE KEY" in p.read_text())


def failing_requests(world: World, agent_id: str, enrollment: str) -> list[httpx.Response]:
    """Requests refused every way a token can be wrong, each carrying a secret somewhere."""
    answers = []
    with httpx.Client(base_url=world.url, timeout=30) as http:

        def send(method: str, path: str, token: str, **kwargs) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            answers.append(http.request(method, path, headers=headers, **kwargs))

        send("GET", "/api/v1/models", world.admin + "x")  # 401: a token one byte off
        # 401: a revoked-looking bearer, and a token where none belongs, in the query string.
        send("GET", "/api/v1/models", world.admin + "-revoked", params={"token": enrollment})
        send("GET", "/api/v1/models", world.agent_a)  # 403: an agent reading the registry
        send("POST", "/api/v1/tokens", world.viewer, json={"role": "admin"})  # 403
        send("POST", f"/api/v1/agents/{agent_id}/heartbeat", world.agent_b, json={})  # 403
        send(  # 422: a secret as an invalid value
            "POST",
            "/api/v1/agents/enroll",
            world.enrollment_a,
            json={"hostname": "", "labels": {"k": world.admin * 10}},
        )
        send("GET", f"/api/v1/reports?environment={world.viewer}&bogus=1", world.admin)  # 422
    for answer in answers:
        assert answer.status_code in (401, 403, 422), answer.text
    return answers


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, wine_model_bytes: bytes) -> Run:
    """One full end-to-end run of a control plane and an agent, both JSON at debug level."""
    tmp = tmp_path_factory.mktemp("no-secrets")
    # The first start of a control plane prints the new admin token once, by design, but in text
    # format only (tests/control_plane/test_server_process.py): with JSON logs it logs where the
    # token file is and never the token. So there is no first-start output to leave out here: the
    # run is the first start, and its output is searched like the rest.
    server = ServerProcess(tmp / "cp", env=DEBUG, extra_args=JSON_LOGS).start()
    agent = AgentProcess(
        tmp / "agent", env={**DEBUG, "TETHER_REPORT_INTERVAL": "0.5"}, extra_args=JSON_LOGS
    )
    metrics: list[str] = []
    try:
        with httpx.Client(
            base_url=server.url,
            timeout=30,
            headers={"Authorization": f"Bearer {server.admin_token}"},
        ) as http:
            # Versions 1 and 2 first, with a profile and an input example, so the agent has drift,
            # shadow and feedback to report; `seed` then points env A at them (1, shadow 2) and
            # makes a token of every role (its own two uploads become unused versions 3 and 4).
            first = train_wine()
            profile = build_profile(FEATURES, predictions=first.predict(FEATURES))
            Operator(http).push("wine", joblib_bytes(first), example=ROWS[:3], profile=profile)
            Operator(http).push("wine", joblib_bytes(train_wine(c=0.3)), example=ROWS[:3])
            world = seed(server, wine_model_bytes)
            created = http.post(
                "/api/v1/tokens", json={"role": "enrollment", "environment": world.env_a}
            )
            enrollment = created.json()["token"]
            agent_id = agent.enroll(server.url, world.env_a, enrollment)
            agent.start()
            eventually(lambda: agent.serving_version("wine", ROWS[:1]) == 1, timeout=60)

            # Traffic with feedback (shadow runs on each), then the refused requests.
            for index in range(20):
                response = agent.predict("wine", ROWS[index : index + 1])
                assert response.status_code == 200, response.text
                label = {"request_id": response.json()["request_id"], "label": int(TARGET[index])}
                assert httpx.post(f"{agent.url}/feedback/wine", json=label).status_code == 202
            answers = failing_requests(world, agent_id, enrollment)
            eventually(lambda: http.get(f"/api/v1/agents/{agent_id}").json()["last_seen"])
            eventually(lambda: http.get("/api/v1/reports").json()["reports"], timeout=30)
            for url in (server.url, agent.url):
                response = httpx.get(f"{url}/metrics")
                assert response.status_code == 200
                metrics.append(response.text)

        # The control plane away: the agent logs its failed polls and keeps its reports.
        server.stop(signal.SIGTERM)
        agent.predict("wine", ROWS[:1])
        eventually(lambda: '"control plane unreachable' in agent.log(), timeout=30)
        metrics.append(httpx.get(f"{agent.url}/metrics").text)
    finally:
        agent.stop()
        server.stop()

    agent_token = json.loads((agent.data_dir / "identity.json").read_text())["token"]
    secrets = {
        "admin token": world.admin,
        "viewer token": world.viewer,
        "enrollment token": world.enrollment_a,
        "enrollment token of the agent process": enrollment,
        "agent A token": world.agent_a,
        "agent B token": world.agent_b,
        "agent process token": agent_token,
    }
    keys = private_keys(server.data_dir) + private_keys(agent.data_dir)
    assert agent.data_dir / "agent-key.pem" in keys, keys
    assert any(key.is_relative_to(server.data_dir / "keys") for key in keys), keys
    for pem_file in keys:
        secrets.update(key_secrets(pem_file))

    logs = {"control plane": server.log(), "agent": agent.log()}
    places = {**logs, "agent enroll output": agent.enroll_output}
    places.update({f"/metrics body {i}": body for i, body in enumerate(metrics)})
    places.update({f"error body {i}": answer.text for i, answer in enumerate(answers)})
    return Run(secrets=secrets, logs=logs, places=places)


def test_no_secret_in_any_output_error_body_or_metrics(run: Run):
    leaks = [
        f"the {name} is in the {place}"
        for name, secret in run.secrets.items()
        for place, text in run.places.items()
        if secret in text
    ]
    assert not leaks, leaks


def test_every_log_line_is_a_json_object(run: Run):
    for where, text in run.logs.items():
        lines = text.splitlines()
        assert len(lines) >= 10, f"the {where} logged only {len(lines)} lines"
        for line in lines:
            entry = json.loads(line)  # raises on any line that is not JSON
            assert isinstance(entry, dict), line
            assert {"time", "level", "logger", "message"} <= set(entry), line


def test_the_search_saw_the_whole_run(run: Run):
    """What was logged and counted is the run expected: otherwise finding nothing proves nothing."""
    agent = [json.loads(line)["message"] for line in run.logs["agent"].splitlines()]
    assert any("manifest revision 1 accepted" in message for message in agent)
    assert any("verified and cached" in message for message in agent)
    assert any("control plane unreachable" in message for message in agent)
    server = [json.loads(line)["message"] for line in run.logs["control plane"].splitlines()]
    assert any("created the first admin token" in message for message in server)
    for request in ("/heartbeat", "/reports", "/artifact", "GET /api/v1/models"):
        assert any(message.endswith(request) for message in server), request
    assert "tether_http_requests_total" in run.places["/metrics body 0"]
    assert "tether_agent_predictions_total" in run.places["/metrics body 1"]
    assert sum(place.startswith("error body") for place in run.places) == 7
