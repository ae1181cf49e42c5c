"""A real `tether server` on an S3 artifact store (moto's standalone server) and a real agent.

moto stands in for S3 because no S3-compatible server is packaged for this machine. The agent
follows the control plane's presigned redirect (or the stream through it, presigning off),
verifies the digest from the signed manifest, and serves; a store that serves other bytes is
refused. Bad settings stop the server at start, saying what is wrong.
"""

from __future__ import annotations

import io
import os
import subprocess

import joblib
import pytest

from tests.support.agent_process import AgentProcess, eventually
from tests.support.models import train_wine
from tests.support.operator import ROWS, Operator
from tests.support.processes import TETHER, ServerProcess, free_port

pytestmark = pytest.mark.e2e


def model_bytes(c: float) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(train_wine(c=c), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("presign", ["true", "false"])
def test_an_agent_pulls_a_model_from_an_s3_backed_control_plane_and_serves_it(
    tmp_path, s3_bucket, presign
):
    environ = {**s3_bucket.environ(), "TETHER_ARTIFACT_PRESIGN": presign}
    with ServerProcess(tmp_path / "cp", env=environ) as server:
        admin = Operator.of(server)
        admin.environment("s3")
        first = admin.push("wine", model_bytes(1.0))
        second = admin.push("wine", model_bytes(0.2))
        stored = {key.rsplit("/", 1)[-1] for key in s3_bucket.object_keys("tether/sha256/")}
        assert stored == {first["artifact"]["sha256"], second["artifact"]["sha256"]}
        assert s3_bucket.object_keys("tether/incoming/") == []
        assert not (server.data_dir / "artifacts").exists()
        revision = admin.desire("s3", "wine", 1)
        agent = AgentProcess(tmp_path / "agent")
        agent.enroll(server.url, "s3", admin.enrollment_token("s3"))
        with agent:
            eventually(lambda: admin.converged("s3", revision, agents=1), timeout=60)
            assert agent.serving_version("wine", ROWS) == 1
            revision = admin.desire("s3", "wine", 2)
            eventually(lambda: admin.converged("s3", revision, agents=1), timeout=60)
            assert agent.serving_version("wine", ROWS) == 2
        log = agent.log_path.read_text(errors="replace")
        assert "X-Amz-Signature" not in log  # a presigned URL is a credential: never logged
        admin.close()


def test_an_artifact_changed_in_the_store_is_refused_and_the_old_model_serves(tmp_path, s3_bucket):
    with ServerProcess(tmp_path / "cp", env=s3_bucket.environ()) as server:
        admin = Operator.of(server)
        admin.environment("tamper")
        admin.push("wine", model_bytes(1.0))
        bad = admin.push("wine", model_bytes(0.05))
        first = admin.desire("tamper", "wine", 1)
        key = f"tether/sha256/{bad['artifact']['sha256']}"
        body = bytearray(s3_bucket.get(key))
        body[len(body) // 2] ^= 0xFF
        s3_bucket.put(key, bytes(body))  # the store (or a mirror) now serves wrong bytes
        agent = AgentProcess(tmp_path / "agent")
        agent.enroll(server.url, "tamper", admin.enrollment_token("tamper"))
        with agent:
            eventually(lambda: admin.converged("tamper", first, agents=1), timeout=60)
            admin.desire("tamper", "wine", bad["version"])

            def refused() -> bool:
                actual = admin.status("tamper")["agents"][0]["models"]["wine"]["actual"]
                return actual["status"] == "failed" and actual["stage"] == "verify"

            eventually(refused, timeout=60)
            assert agent.serving_version("wine", ROWS) == 1
            artifacts = agent.data_dir / "artifacts"
            assert not (artifacts / "sha256" / bad["artifact"]["sha256"]).exists()
            assert list((artifacts / "partial").iterdir()) == []
        admin.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"--artifact-store": "gs://models/tether"}, "unsupported scheme 'gs'"),
        ({"TETHER_ARTIFACT_STORE": "s3://Bad_Bucket/x"}, "invalid bucket name 'Bad_Bucket'"),
        ({"TETHER_ARTIFACT_STORE_ENDPOINT": "minio:9000"}, "artifact_store_endpoint"),
        ({"TETHER_ARTIFACT_STORE": "s3://tether-no-such-bucket"}, "does not exist; create it"),
        ({"TETHER_ARTIFACT_STORE_ENDPOINT": "unreachable"}, "cannot reach the endpoint"),
    ],
)
def test_bad_store_settings_stop_the_server_at_start_naming_the_problem(
    tmp_path, s3_bucket, settings, message
):
    environ = s3_bucket.environ()
    if settings.get("TETHER_ARTIFACT_STORE_ENDPOINT") == "unreachable":
        settings = {"TETHER_ARTIFACT_STORE_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    flags = [
        item for name, value in settings.items() if name.startswith("--") for item in (name, value)
    ]
    environ.update({name: value for name, value in settings.items() if not name.startswith("--")})
    done = subprocess.run(
        [*TETHER, "server", "--data-dir", str(tmp_path / "cp"), "--port", str(free_port()), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, **environ},
        timeout=120,
    )
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
