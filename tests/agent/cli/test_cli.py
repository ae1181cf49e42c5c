"""`tether agent enroll | run | status` in process: clear errors, JSON for scripts."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import agent as agent_group
from common.cli import cli
from tests.support.agent_world import URL, desire


@pytest.fixture(autouse=True)
def no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's TETHER_* variables out of the settings these commands load."""
    import os

    for name in list(os.environ):
        if name.startswith("TETHER_"):
            monkeypatch.delenv(name)


def tether(*args: str, obj=None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), obj=obj, catch_exceptions=False)


def enroll_args(data_dir: Path, token: str, *extra: str) -> list[str]:
    return [
        "agent",
        "enroll",
        "--url",
        URL,
        "--env",
        "production",
        "--token",
        token,
        "--data-dir",
        str(data_dir),
        *extra,
    ]


def test_enroll_stores_a_private_identity(api, env, transport, tmp_path):
    token = api.create_token("enrollment", environment=env)
    result = tether(
        *enroll_args(
            tmp_path / "a", token, "--hostname", "web-1", "--label", "zone=eu-1", "--json"
        ),
        obj=transport,
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["environment"] == "production"
    identity = tmp_path / "a" / "identity.json"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    stored = json.loads(identity.read_text())
    assert stored["agent_id"] == answer["agent_id"] and stored["labels"] == {"zone": "eu-1"}
    shown = api.get(f"/api/v1/agents/{answer['agent_id']}").get_json()
    assert shown["hostname"] == "web-1" and shown["labels"] == {"zone": "eu-1"}


def test_enroll_twice_needs_force(api, env, transport, tmp_path):
    token = api.create_token("enrollment", environment=env)
    assert tether(*enroll_args(tmp_path, token), obj=transport).exit_code == 0
    again = tether(*enroll_args(tmp_path, token), obj=transport)
    assert again.exit_code == 1 and "already enrolled" in again.output and "--force" in again.output
    forced = tether(*enroll_args(tmp_path, token, "--force"), obj=transport)
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "tether_enroll_wrong"], "enrollment failed: 401"),
        (["--label", "novalue"], "is not KEY=VALUE"),
        (["--env", "staging"], "not 'staging'"),
    ],
    ids=["bad-token", "bad-label", "wrong-env"],
)
def test_enroll_errors_name_the_problem(api, env, transport, tmp_path, args, message):
    token = api.create_token("enrollment", environment=env)
    base = enroll_args(tmp_path, token)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in base:
            base[base.index(flag) + 1] = value
        else:
            base += [flag, value]
    result = tether(*base, obj=transport)
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "identity.json").exists()


def test_status_reads_local_state_only(api, make_agent, push, wine_model_bytes, tmp_path):
    push(wine_model_bytes)
    desire(api, "wine", 1)
    daemon = make_agent()
    daemon.store.save_identity(daemon.identity)
    daemon.poller.poll_once()
    data_dir = str(daemon.settings.data_dir)

    result = tether("agent", "status", "--data-dir", data_dir, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["models"]["wine"]["serving"] == 1
    assert report["models"]["wine"]["status"] == "ok"
    assert report["reachable"] is True and report["last_successful_poll"]
    assert report["agent_id"] == daemon.identity.agent_id
    assert "token" not in result.output

    text = tether("agent", "status", "--data-dir", data_dir).output
    assert "wine" in text and "v1" in text and "reachable" in text
    assert daemon.identity.token not in text


def test_status_shows_failures(make_agent):
    import httpx

    daemon = make_agent(httpx.MockTransport(lambda r: httpx.Response(503)))
    daemon.poller.poll_once()
    text = tether("agent", "status", "--data-dir", str(daemon.settings.data_dir)).output
    assert "UNREACHABLE" in text and "503" in text


def test_status_without_an_agent_is_a_clear_error(tmp_path):
    result = tether("agent", "status", "--data-dir", str(tmp_path))
    assert result.exit_code == 1 and "tether agent enroll" in result.output


def test_run_without_enrollment_is_a_clear_error(tmp_path):
    result = tether("agent", "run", "--data-dir", str(tmp_path))
    assert result.exit_code == 1 and "run `tether agent enroll` first" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--serve", "nonsense"], "is not HOST:PORT"),
        (["--url", "ftp://x"], "not an http:// or https:// URL"),
        (["--config", "/nonexistent/agent.toml"], "settings file not found"),
    ],
)
def test_run_refuses_bad_settings(tmp_path, args, message):
    result = tether("agent", "run", "--data-dir", str(tmp_path), *args)
    assert result.exit_code == 1 and message in result.output


def test_the_example_config_loads_and_names_every_setting():
    from agent.settings import AgentSettings, load_agent_settings

    path = Path(__file__).parents[3] / "config" / "agent.toml"
    loaded = load_agent_settings(path, environ={})
    text = path.read_text()
    for name in AgentSettings.model_fields:
        assert f"{name} =" in text or f"[{name}]" in text, f"{name} is not in config/agent.toml"
    assert loaded.serve == "127.0.0.1:8501"


def test_every_command_has_help_with_an_example():
    for name, command in agent_group.commands.items():
        result = tether("agent", name, "--help")
        assert result.exit_code == 0
        assert "Example:" in result.output, name
        assert command.help and command.help.strip()


def test_every_command_is_in_the_docs():
    text = (Path(__file__).parents[3] / "docs" / "agent.md").read_text()
    for name in agent_group.commands:
        assert f"tether agent {name}" in text, name


def test_help_loads_no_model_or_statistics_library():
    """`tether agent --help` on a small host answers at once: the library loads per command."""
    probe = (
        "import sys; from agent.cli import agent; "
        "heavy = sorted({'scipy', 'sklearn', 'pandas'} & set(sys.modules)); print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_enroll_keeps_the_tls_files_for_run_and_settings_win_over_them(
    api, env, transport, tmp_path, pki, monkeypatch
):
    token = api.create_token("enrollment", environment=env)
    monkeypatch.chdir(pki.ca_cert.parent)  # relative paths are stored absolute
    tls = ["--ca-file", "ca.pem", "--client-cert", "client.pem", "--client-key", "client.key"]
    result = tether(*enroll_args(tmp_path / "a", token, *tls), obj=transport)
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "a" / "identity.json").read_text())
    assert (stored["ca_file"], stored["client_key"]) == (str(pki.ca_cert), str(pki.client_key))

    from agent.local.state import StateStore
    from agent.settings import AgentSettings

    identity = StateStore(tmp_path / "a").load_identity()
    assert identity is not None
    other_ca = tmp_path / "other-ca.pem"
    chosen = AgentSettings(ca_file=other_ca).tls_files(identity.tls)
    assert (chosen.ca_file, chosen.client_cert) == (other_ca, pki.client_cert)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ca-file", "missing.pem"], "/missing.pem does not exist"),
        (["--client-cert", "client.pem"], "client_key is not"),
        (["--ca-file", "client.key"], "holds no PEM certificate"),
        (["--client-cert", "client.pem", "--client-key", "ca.key"], "does not match"),
    ],
    ids=["missing-ca", "cert-without-key", "key-as-ca", "key-of-another"],
)
def test_enroll_refuses_bad_tls_files_and_stores_nothing(
    api, env, transport, tmp_path, pki, monkeypatch, args, message
):
    token = api.create_token("enrollment", environment=env)
    monkeypatch.chdir(pki.ca_cert.parent)
    result = tether(*enroll_args(tmp_path / "a", token, *args), obj=transport)
    assert result.exit_code == 1
    assert message in result.output and "nothing was stored" in result.output
    assert not (tmp_path / "a" / "identity.json").exists()
    assert api.get("/api/v1/agents").get_json()["agents"] == []


def test_run_with_a_bad_ca_file_is_a_clear_error(api, env, transport, tmp_path):
    token = api.create_token("enrollment", environment=env)
    assert tether(*enroll_args(tmp_path / "a", token), obj=transport).exit_code == 0
    result = CliRunner().invoke(
        cli,
        ["agent", "run", "--data-dir", str(tmp_path / "a")],
        env={"TETHER_CA_FILE": str(tmp_path / "nope.pem")},
        obj=transport,
    )
    assert result.exit_code == 1
    assert f"CA file {tmp_path / 'nope.pem'} does not exist" in result.output
