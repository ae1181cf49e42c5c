"""A real `tether server` process on loopback, driven by the real `tether` CLI as a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest

from tests.cli.checkouts import git, make_checkout
from tests.support.models import train_wine, wine_frame
from tests.support.processes import TETHER, ServerProcess, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("e2e") / "data") as running:
        yield running


class Shell:
    """Run `python -m common ...` the way an operator's shell would, with a clean environment."""

    def __init__(self, server: ServerProcess, home: Path) -> None:
        self.server = server
        self.home = home
        base = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        self.env = {
            **base,
            "XDG_CONFIG_HOME": str(home / "config"),
            "GIT_CEILING_DIRECTORIES": str(home),
        }

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        token: str | None = None,
        server_env: bool = True,
        ok: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if server_env:
            env.update(TETHER_URL=self.server.url, TETHER_TOKEN=token or self.server.admin_token)
        done = subprocess.run(
            [*TETHER, *args],
            cwd=cwd or self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok:
            assert done.returncode == 0, (args, done.stdout, done.stderr, self.server.log()[-2000:])
        return done

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kwargs).stdout)

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {token or self.server.admin_token}",
            **kwargs.pop("headers", {}),
        }
        return httpx.request(method, self.server.url + path, headers=headers, timeout=10, **kwargs)


@pytest.fixture
def shell(server, tmp_path) -> Shell:
    return Shell(server, tmp_path)


def test_operator_flow_and_readme_tour(shell, tmp_path, wine_model_file):
    checkout = make_checkout(tmp_path / "repo")
    example = [{"alcohol": 13.2, "proline": 1065}]
    pushed = shell.json(
        "model",
        "push",
        "wine",
        str(wine_model_file),
        "--input-example",
        json.dumps(example),
        "--metadata",
        '{"metrics": {"accuracy": 0.97}}',
        cwd=checkout,
    )
    assert pushed["version"] == 1
    assert pushed["code_revision"] == git(checkout, "rev-parse", "HEAD")
    assert [f["name"] for f in pushed["input_schema"]] == list(wine_frame()[0].columns)
    assert pushed["input_example"] == example and pushed["metrics"] == {"accuracy": 0.97}
    # The candidate goes in over raw HTTP: a second CLI push would only import scikit-learn again.
    candidate = io.BytesIO()
    joblib.dump(train_wine(c=0.5), candidate)
    response = shell.api(
        "POST",
        "/api/v1/models/wine/versions",
        files={"artifact": ("wine.joblib", candidate.getvalue())},
        data={"metadata": "{}"},
    )
    assert response.status_code == 201 and response.json()["version"] == 2

    assert shell.json("env", "create", "staging")["revision"] == 0
    desired = shell.json(
        "env", "set", "staging", "wine", "1", "--shadow", "2", "--reason", "canary"
    )
    assert desired == {
        "environment": "staging",
        "revision": 1,
        "models": {"wine": {"version": 1, "shadow": 2}},
    }

    # The README tour: read the desired state back with its ETag; the next read is a 304.
    path = "/api/v1/environments/staging/desired"
    first = shell.api("GET", path)
    assert first.status_code == 200 and first.json() == desired
    assert first.headers["ETag"] == '"1"'
    again = shell.api("GET", path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""

    shown = shell.run("env", "show", "staging").stdout
    assert ["wine", "v1", "v2"] in [line.split() for line in shown.splitlines()]
    assert shell.json("env", "promote", "staging", "wine")["models"]["wine"] == {
        "version": 2,
        "shadow": None,
    }
    assert shell.json("env", "rollback", "staging", "wine", "--reason", "drift")["models"][
        "wine"
    ] == {"version": 1, "shadow": None}
    history = shell.json("env", "history", "staging")["entries"]
    assert [(e["action"], e["reason"]) for e in history] == [
        ("rollback", "drift"),
        ("promote", ""),
        ("set", "canary"),
    ]
    assert history[0]["actor"].startswith("admin:")
    changed = shell.api("GET", path, headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] == '"3"'

    # An agent enrolls with a token made by the CLI and reports that it converged.
    enrollment = shell.json(
        "token", "create", "--role", "enrollment", "--env", "staging", "--max-uses", "1"
    )["token"]
    agent = shell.api(
        "POST", "/api/v1/agents/enroll", enrollment, json={"hostname": "edge-1"}
    ).json()
    beat = shell.api(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/heartbeat",
        agent["token"],
        json={"applied_revision": 3, "models": {"wine": {"serving": 1}}},
    )
    assert beat.status_code == 200, beat.text
    status = shell.run("status", "staging").stdout
    assert "Environment staging, revision 3: 1/1 agent(s) converged" in status
    assert "edge-1" in status

    # A viewer token from the CLI reads but cannot write.
    viewer = shell.run("token", "create", "--role", "viewer").stdout.strip()
    report = shell.json("status", "staging", token=viewer)
    assert report == shell.api("GET", "/api/v1/environments/staging/status").json()
    refused = shell.run("env", "create", "production", token=viewer, ok=False)
    assert refused.returncode == 1
    assert "403 forbidden: a viewer token may not do this" in refused.stderr
    assert shell.api("GET", "/api/v1/environments/production").status_code == 404


def test_cli_toml_then_an_unreachable_server(shell, server):
    config = shell.home / "config" / "tether" / "cli.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{server.url}"\ntoken = "{server.admin_token}"\n')
    assert "environments" in shell.json("env", "list", server_env=False)

    url = f"http://127.0.0.1:{free_port()}"
    failed = shell.run("model", "list", "--url", url, server_env=False, ok=False)
    assert failed.returncode == 1
    assert f"cannot reach the control plane at {url}" in failed.stderr
    assert "Traceback" not in failed.stderr
