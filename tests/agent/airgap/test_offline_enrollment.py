"""Provisioning on the operator's machine and enrolling from the file, in process."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.airgap.provision import ProvisionFile
from agent.local.trust import TrustStore, load_agent_key
from common.cli import cli
from common.signing import describe
from tests.support.agent_world import URL


def tether(transport, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), obj=transport, env=env, catch_exceptions=False)


@pytest.fixture
def provisioned(api, env, transport, admin_token, tmp_path: Path) -> Path:
    out = tmp_path / "edge.tether-agent"
    result = tether(
        transport,
        "agent",
        "provision",
        env,
        "--out",
        str(out),
        "--hostname",
        "edge-7",
        "--url",
        URL,
        "--token",
        admin_token,
    )
    assert result.exit_code == 0, result.output
    return out


def test_provision_writes_one_private_file_and_registers_the_agent(api, provisioned: Path):
    assert stat.S_IMODE(provisioned.stat().st_mode) == 0o600
    body = ProvisionFile.model_validate_json(provisioned.read_text())
    shown = api.get(f"/api/v1/agents/{body.agent_id}").get_json()
    assert shown["hostname"] == "edge-7" and shown["environment"] == body.environment
    assert body.url == URL and body.signing_keys
    # The control plane holds the public half of the key in the file (to verify exports).
    assert shown["public_key"] == describe(load_agent_key_from(body).public_key()).model_dump()


def test_provision_never_overwrites_without_force(env, transport, admin_token, provisioned):
    args = ["agent", "provision", env, "--out", str(provisioned), "--url", URL]
    again = tether(transport, *args, "--token", admin_token)
    assert again.exit_code == 1 and "--force" in again.output


def test_provision_needs_an_admin_token(env, transport, tmp_path, api):
    viewer = api.create_token("viewer")
    out = tmp_path / "x.tether-agent"
    result = tether(
        transport, "agent", "provision", env, "--out", str(out), "--url", URL, "--token", viewer
    )
    assert result.exit_code == 1 and "provisioning failed: 403" in result.output
    assert not out.exists()


def test_enroll_from_the_file_needs_no_network(provisioned: Path, tmp_path: Path):
    site = tmp_path / "site"
    body = ProvisionFile.model_validate_json(provisioned.read_text())
    # No transport and a URL nothing listens on: any request would fail.
    result = tether(
        None,
        "agent",
        "enroll",
        "--from-file",
        str(provisioned),
        "--data-dir",
        str(site),
        "--json",
        env={"TETHER_URL": "http://127.0.0.1:9"},
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["agent_id"] == body.agent_id
    assert "WARNING" in result.stderr  # no --pin: first use, said loudly
    assert TrustStore(site).load() == body.signing_keys
    assert describe(load_agent_key(site).public_key()) == describe(
        load_agent_key_from(body).public_key()
    )
    for name in ("identity.json", "trust.json", "agent-key.pem"):
        assert stat.S_IMODE((site / name).stat().st_mode) == 0o600


def load_agent_key_from(body: ProvisionFile):
    from common.signing import load_private_key_pem

    return load_private_key_pem(body.private_key_pem.encode())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pin", "SHA256:" + "B" * 43], "is not among the control plane's keys"),
        (["--env", "staging"], "not 'staging'"),
    ],
)
def test_enroll_from_the_file_refuses_a_mismatch(provisioned, tmp_path, extra, message):
    site = tmp_path / "site"
    result = tether(
        None, "agent", "enroll", "--from-file", str(provisioned), "--data-dir", str(site), *extra
    )
    assert result.exit_code == 1 and message in result.output
    assert not site.exists() or not any(site.iterdir())


def test_enroll_from_a_damaged_file_is_a_clear_error(provisioned, tmp_path):
    body = json.loads(provisioned.read_text())
    body["private_key_pem"] = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"
    damaged = tmp_path / "damaged.tether-agent"
    damaged.write_text(json.dumps(body))
    result = tether(
        None, "agent", "enroll", "--from-file", str(damaged), "--data-dir", str(tmp_path / "s")
    )
    assert result.exit_code == 1 and "unusable agent key" in result.output


def test_enroll_needs_a_url_env_and_token_or_a_file(tmp_path):
    result = tether(
        None, "agent", "enroll", "--data-dir", str(tmp_path), env={"TETHER_ENROLLMENT_TOKEN": ""}
    )
    assert result.exit_code == 2 and "--from-file" in result.output


def test_bundle_export_writes_the_file_or_nothing(api, env, transport, admin_token, tmp_path):
    out = tmp_path / "b.tar"
    ok = tether(
        transport,
        "bundle",
        "export",
        env,
        "--out",
        str(out),
        "--json",
        env={"TETHER_URL": URL, "TETHER_TOKEN": admin_token},
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["bytes"] == out.stat().st_size > 0
    missing = tether(
        transport,
        "bundle",
        "export",
        "nowhere",
        "--out",
        str(tmp_path / "n.tar"),
        env={"TETHER_URL": URL, "TETHER_TOKEN": admin_token},
    )
    assert missing.exit_code == 1 and "404" in missing.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tar" or "part" in p.name) == [
        "b.tar"
    ]
