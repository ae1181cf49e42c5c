"""Fixtures for the CLI tests: the `tether` command over the in-process app, and state snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from common.cli import cli
from control_plane.cli.client import ClientFactory
from tests.support.api import Api

URL = "http://tether.test"


@pytest.fixture(autouse=True)
def isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the user's own TETHER_* variables, cli.toml and git checkouts out of every test."""
    for name in ("TETHER_URL", "TETHER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config_home = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    return config_home


class Cli:
    """Run `tether ...` in process against the app, as admin unless told otherwise."""

    def __init__(self, app: Any, admin_token: str) -> None:
        self.factory = ClientFactory(transport=httpx.WSGITransport(app=app))
        self.admin_token = admin_token

    def run(self, *args: str, token: str | None = "admin", ok: bool | None = None) -> Result:
        """Invoke the command; `token` is 'admin', a secret, or None for no token at all."""
        secret = self.admin_token if token == "admin" else token
        result = CliRunner().invoke(
            cli,
            list(args),
            obj=self.factory,
            env={"TETHER_URL": URL, "TETHER_TOKEN": secret},
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if ok is True:
            assert result.exit_code == 0, result.output
        elif ok is False:
            assert result.exit_code != 0, result.output
        return result

    def json(self, *args: str, token: str | None = "admin") -> Any:
        """Invoke the command with --json and return the parsed answer."""
        return json.loads(self.run(*args, "--json", token=token, ok=True).stdout)


@pytest.fixture
def tether(app, admin_token) -> Cli:
    return Cli(app, admin_token)


def snapshot(api: Api, app: Any) -> dict[str, Any]:
    """Read everything an operator command could have stored, through the API and the disk."""
    state: dict[str, Any] = {"models": api.get("/api/v1/models").get_json()}
    for summary in state["models"]["models"]:
        name = summary["name"]
        state[f"versions:{name}"] = api.get(f"/api/v1/models/{name}/versions").get_json()
    state["environments"] = api.get("/api/v1/environments").get_json()
    for environment in state["environments"]["environments"]:
        name = environment["name"]
        state[f"desired:{name}"] = api.get(f"/api/v1/environments/{name}/desired").get_json()
        state[f"history:{name}"] = api.get(f"/api/v1/environments/{name}/history").get_json()
    state["tokens"] = api.get("/api/v1/tokens").get_json()
    artifacts = app.extensions["tether"].artifacts.root
    state["files"] = sorted(str(path.relative_to(artifacts)) for path in artifacts.rglob("*"))
    return state
