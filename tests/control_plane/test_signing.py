"""Signing keys: created on first start, private, rotated with the old key co-signing."""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from common.cli import cli
from common.signing import BadSignature, PublicKey, Signature, verify
from tests.support.api import Api


def signed_manifest(api: Api, agent: dict) -> dict:
    response = api.get(f"/api/v1/agents/{agent['agent_id']}/manifest", token=agent["token"])
    assert response.status_code == 200
    return response.get_json()


def test_first_start_creates_one_private_key(app):
    keys_dir = app.extensions["tether"].settings.keys_dir
    pems = list(keys_dir.glob("*.pem"))
    assert len(pems) == 1
    assert stat.S_IMODE(pems[0].stat().st_mode) == 0o600


def test_rotation_is_followed_by_an_agent_that_trusted_the_old_key(app, api: Api, wine_model_bytes):
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes)
    api.set_desired("production", "wine", 1)
    agent = api.enroll("production")
    old = {key["key_id"]: PublicKey(**key) for key in agent["signing_keys"]}
    data_dir = str(app.extensions["tether"].settings.data_dir)

    result = CliRunner().invoke(cli, ["key", "rotate", "--data-dir", data_dir, "--json"])
    assert result.exit_code == 0, result.output
    new_key = PublicKey.model_validate_json(result.output)
    assert new_key.key_id not in old

    body = signed_manifest(api, agent)
    signatures = [Signature(**item) for item in body["signatures"]]
    assert {s.key_id for s in signatures} == {new_key.key_id, *old}
    # Trusting only the old key, the agent verifies the manifest and learns the new key from it.
    assert verify(body["manifest"], signatures, old) in old
    learned = {key["key_id"]: PublicKey(**key) for key in body["manifest"]["signing_keys"]}
    assert new_key.key_id in learned
    only_new = [s for s in signatures if s.key_id == new_key.key_id]
    assert verify(body["manifest"], only_new, learned) == new_key.key_id
    with pytest.raises(BadSignature, match="untrusted"):
        verify(body["manifest"], only_new, old)


def test_key_show_prints_fingerprints(app):
    data_dir = str(app.extensions["tether"].settings.data_dir)
    result = CliRunner().invoke(cli, ["key", "show", "--data-dir", data_dir])
    assert result.exit_code == 0
    assert result.output.startswith("SHA256:")


def test_key_commands_need_a_data_dir_with_keys(tmp_path):
    result = CliRunner().invoke(cli, ["key", "show", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "no signing keys" in result.output
