"""`tether key rotate` twice on a real control plane: a pinned agent follows, never re-enrolled."""

from __future__ import annotations

import io
import json
import os
import subprocess

import httpx
import joblib
import pytest
from click.testing import CliRunner

from common.cli import cli
from tests.support.agent_process import AgentProcess, eventually
from tests.support.models import train_wine, wine_frame
from tests.support.processes import TETHER, ServerProcess

pytestmark = pytest.mark.e2e

ROWS = wine_frame()[0].iloc[:2].to_dict("records")


def keys(server: ServerProcess, *command: str) -> list[dict]:
    """Run `tether key ...` on the control plane's data dir; return the keys it prints."""
    args = ["key", *command, "--data-dir", str(server.data_dir), "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    return answer.get("keys", [answer])


def trusted(agent: AgentProcess) -> set[str]:
    body = json.loads((agent.data_dir / "trust.json").read_text())
    return {key["fingerprint"] for key in body["keys"]}


def test_a_pinned_agent_follows_two_rotations(tmp_path):
    with ServerProcess(tmp_path / "cp" / "data") as server:
        http = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.admin_token}"},
            timeout=30,
        )

        def desire(version: int) -> int:
            answer = http.put("/api/v1/environments/edge/desired/wine", json={"version": version})
            assert answer.status_code == 200, answer.text
            return answer.json()["revision"]

        assert http.put("/api/v1/environments/edge", json={}).status_code == 201
        for c in (1.0, 0.3):
            buffer = io.BytesIO()
            joblib.dump(train_wine(c=c), buffer)
            pushed = http.post(
                "/api/v1/models/wine/versions",
                files={"artifact": ("m.joblib", buffer.getvalue())},
                data={"metadata": json.dumps({"input_example": ROWS})},
            )
            assert pushed.status_code == 201, pushed.text
        desire(1)
        token = http.post(
            "/api/v1/tokens", json={"role": "enrollment", "environment": "edge"}
        ).json()["token"]
        [first] = keys(server, "show")

        agent = AgentProcess(tmp_path / "agent")
        enrolled = subprocess.run(
            [
                *TETHER,
                "agent",
                "enroll",
                "--url",
                server.url,
                "--env",
                "edge",
                "--token",
                token,
                "--data-dir",
                str(agent.data_dir),
                "--pin",
                first["fingerprint"],
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("TETHER_")},
        )
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert "WARNING" not in enrolled.stderr
        with agent:
            eventually(lambda: agent.serving_version("wine", ROWS) == 1)
            assert trusted(agent) == {first["fingerprint"]}

            # First rotation: manifests are signed by the new key and the first.
            [second] = keys(server, "rotate")
            desire(2)
            eventually(lambda: agent.serving_version("wine", ROWS) == 2)
            assert trusted(agent) == {first["fingerprint"], second["fingerprint"]}

            # Second rotation: the first key no longer signs; the agent trusts the second.
            [third] = keys(server, "rotate")
            assert {k["fingerprint"] for k in keys(server, "show")} == {
                second["fingerprint"],
                third["fingerprint"],
            }
            desire(1)
            eventually(lambda: agent.serving_version("wine", ROWS) == 1)
            eventually(lambda: trusted(agent) == {second["fingerprint"], third["fingerprint"]})
        assert "trusted control-plane keys changed" in agent.log()
        http.close()
