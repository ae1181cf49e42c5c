"""Enrollment decides whom the agent trusts: a pinned key, or the first one seen, said loudly."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.local.datadir import AGENT_KEY_FILE, TRUST_FILE
from agent.local.trust import TrustStore, load_agent_key
from common.cli import cli
from common.signing import describe
from tests.support.agent_world import URL, desire


@pytest.fixture(autouse=True)
def no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TETHER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent"  # beside the app's own data dir


def enroll(transport, data_dir: Path, token: str, *extra: str):
    args = ["agent", "enroll", "--url", URL, "--env", "production", "--token", token]
    args += ["--data-dir", str(data_dir), "--json", *extra]
    return CliRunner().invoke(cli, args, obj=transport, catch_exceptions=False)


def control_plane_keys(app) -> list:
    return app.extensions["tether"].keys.current().public


def test_the_pinned_key_is_trusted_and_the_agent_key_registered(
    app, api, env, transport, agent_dir
):
    [key] = control_plane_keys(app)
    token = api.create_token("enrollment", environment=env)
    result = enroll(transport, agent_dir, token, "--pin", key.fingerprint)
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.stderr
    answer = json.loads(result.stdout)
    assert answer["pinned"] == key.fingerprint and answer["trusted_keys"] == [key.fingerprint]
    assert TrustStore(agent_dir).load() == [key]
    for name in ("identity.json", TRUST_FILE, AGENT_KEY_FILE):
        assert stat.S_IMODE((agent_dir / name).stat().st_mode) == 0o600, name
    registered = api.get(f"/api/v1/agents/{answer['agent_id']}").get_json()["public_key"]
    assert registered == describe(load_agent_key(agent_dir).public_key()).model_dump()
    secret = json.loads((agent_dir / "identity.json").read_text())["token"]
    assert secret not in result.output and "PRIVATE KEY" not in result.output


def test_a_pin_that_matches_no_key_refuses_enrollment_and_stores_nothing(
    app, api, env, transport, agent_dir
):
    token = api.create_token("enrollment", environment=env)
    wrong = "SHA256:" + "A" * 43
    result = enroll(transport, agent_dir, token, "--pin", wrong)
    assert result.exit_code == 1
    assert "enrollment refused" in result.output and wrong in result.output
    assert "nothing was stored" in result.output
    assert not agent_dir.exists()


def test_without_a_pin_the_keys_are_trusted_on_first_use_with_a_warning(
    app, api, env, transport, agent_dir
):
    [key] = control_plane_keys(app)
    token = api.create_token("enrollment", environment=env)
    result = enroll(transport, agent_dir, token)
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert warning and "first use" in warning[0] and key.fingerprint in warning[0]
    assert TrustStore(agent_dir).load() == [key]


def test_an_agent_that_trusts_no_key_refuses_every_manifest(
    api, make_agent, push, wine_model_bytes
):
    push(wine_model_bytes)
    desire(api, "wine", 1)
    agent = make_agent()
    (agent.settings.data_dir / TRUST_FILE).unlink()
    agent.poller.poll_once()
    assert agent.slots.names() == []
    assert "no trusted control-plane key" in (agent.store.load().last_error or "")


def test_status_shows_the_trusted_keys(app, api, env, transport, agent_dir):
    [key] = control_plane_keys(app)
    token = api.create_token("enrollment", environment=env)
    assert enroll(transport, agent_dir, token).exit_code == 0
    result = CliRunner().invoke(cli, ["agent", "status", "--data-dir", str(agent_dir), "--json"])
    assert json.loads(result.stdout)["trusted_keys"] == [key.fingerprint]


def test_the_agent_logs_no_secret(api, make_agent, push, wine_model_bytes, caplog):
    caplog.set_level(logging.DEBUG)
    push(wine_model_bytes)
    desire(api, "wine", 1)
    agent = make_agent()
    agent.poller.poll_once()
    assert agent.poller.heartbeat()
    assert "GET /api/v1/agents/" in caplog.text  # the requests are logged...
    assert agent.identity.token not in caplog.text  # ...never with their token
