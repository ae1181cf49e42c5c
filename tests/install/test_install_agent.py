"""install-agent.sh into a staging root from a wheelhouse; the installed agent then converges."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.install.conftest import (
    INSTALLER,
    REPO,
    VENV,
    Staged,
    clean_env,
    install,
    run_script,
    snapshot,
    venv_python,
)
from tests.support.agent_process import FAST, eventually
from tests.support.operator import ROWS, Operator
from tests.support.processes import TETHER, ServerProcess, wait_until_ready

pytestmark = pytest.mark.e2e


def mode(path: Path) -> int:
    return path.lstat().st_mode & 0o7777


def test_staged_install_writes_venv_config_unit_and_user(staged: Staged):
    root = staged.root
    assert "skipped    enrollment (--no-enroll)" in staged.first_run
    assert "changed    /opt/tether/venv (venv: tether, version 0.1.0 from wheelhouse" in (
        staged.first_run
    )

    version = subprocess.run([*staged.tether, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "0.1.0" in version.stdout
    # The scripts name the final path, so the tree works once copied into an image.
    assert (root / VENV / "bin" / "tether").read_text().startswith("#!/opt/tether/venv/bin/python")

    config = root / "etc/tether/agent.toml"
    assert mode(config) == 0o640
    settings = tomllib.loads(config.read_text())
    assert settings["data_dir"] == "/var/lib/tether"
    assert settings["serve"] == f"127.0.0.1:{staged.port}"
    assert settings["labels"] == {"zone": "test-1"}

    data_dir = root / "var/lib/tether"
    assert data_dir.is_dir() and mode(data_dir) == 0o750

    unit = root / "etc/systemd/system/tether-agent.service"
    assert mode(unit) == 0o644
    assert unit.read_text() == (REPO / "config/tether-agent.service").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/tether-agent.service"
    assert (
        wants.is_symlink() and str(wants.readlink()) == "/etc/systemd/system/tether-agent.service"
    )

    # No useradd on this system under --root: the image creates the user and hands it its files.
    assert (root / "etc/sysusers.d/tether.conf").read_text() == (
        'u tether - "Tether agent" /var/lib/tether /usr/sbin/nologin\n'
    )
    tmpfiles = (root / "etc/tmpfiles.d/tether.conf").read_text().splitlines()
    assert "d /var/lib/tether 0750 tether tether -" in tmpfiles
    assert "z /etc/tether/agent.toml 0640 root tether -" in tmpfiles


def test_running_it_again_changes_nothing(staged: Staged):
    install(*staged.args, "--no-enroll")  # whatever other tests did, back to these flags
    before = snapshot(staged.root)
    done = install(*staged.args, "--no-enroll")
    assert snapshot(staged.root) == before
    assert done.stdout.rstrip().endswith("Nothing changed.")
    assert "\nchanged" not in "\n" + done.stdout
    assert "unchanged  /opt/tether/venv" in done.stdout
    assert "unchanged  /etc/tether/agent.toml" in done.stdout


def test_installed_agent_enrolls_and_converges(staged: Staged, tmp_path: Path, wine_model_bytes):
    with ServerProcess(tmp_path / "control-plane") as server:
        operator = Operator.of(server)
        operator.environment("edge")
        operator.push("wine", wine_model_bytes, example=ROWS, filename="wine.joblib")
        revision = operator.desire("edge", "wine", 1)
        token = operator.enrollment_token("edge")

        enroll = ["--url", server.url, "--env", "edge"]
        help_text = subprocess.run(
            [*staged.tether, "agent", "enroll", "--help"], capture_output=True, text=True
        ).stdout
        with_token = clean_env(TETHER_ENROLLMENT_TOKEN=token)  # not in the process list
        if "--pin" in help_text:  # the pin arrives with signed manifests
            keys = subprocess.run(
                [*TETHER, "key", "show", "--data-dir", str(server.data_dir), "--json"],
                capture_output=True,
                text=True,
                check=True,
            )
            wrong = run_script(
                INSTALLER, "--python", venv_python(), *staged.args, *enroll,
                "--pin", "SHA256:" + "A" * 43, env=with_token,
            )  # fmt: skip
            assert wrong.returncode == 1, wrong.stdout + wrong.stderr
            assert "install-agent.sh: error: enrollment failed" in wrong.stderr
            assert not (staged.root / "var/lib/tether/identity.json").exists()
            enroll += ["--pin", json.loads(keys.stdout)["keys"][0]["fingerprint"]]
        done = install(*staged.args, *enroll, env=with_token)
        assert "changed    enrollment: agt_" in done.stdout
        identity = json.loads((staged.root / "var/lib/tether/identity.json").read_text())
        assert identity["environment"] == "edge" and identity["url"] == server.url
        assert mode(staged.root / "var/lib/tether/identity.json") == 0o600
        again = install(*staged.args, *enroll, env=with_token)
        assert again.stdout.rstrip().endswith("Nothing changed."), again.stdout

        # What the unit's ExecStart runs, with the data dir under the staging root.
        log_path = tmp_path / "agent.log"
        with open(log_path, "wb") as log:
            agent = subprocess.Popen(
                [
                    *staged.tether,
                    "agent",
                    "run",
                    "--config",
                    str(staged.root / "etc/tether/agent.toml"),
                    "--data-dir",
                    str(staged.root / "var/lib/tether"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(**FAST),
                cwd=tmp_path,
            )
        local = f"http://127.0.0.1:{staged.port}"
        try:
            wait_until_ready(f"{local}/v2/health/live", agent, timeout=60)

            def converged() -> bool:
                status = operator.status("edge")
                return status["converged"] == 1 and status["revision"] == revision

            try:
                eventually(converged, timeout=90)
            except TimeoutError as error:
                status = operator.status("edge")
                raise AssertionError(f"{error}\n{status}\n{log_path.read_text()}") from None
            answer = httpx.post(f"{local}/predict/wine", json={"instances": ROWS}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == 1
            assert len(answer.json()["predictions"]) == len(ROWS)
            listed = operator.http.get(f"/api/v1/agents/{identity['agent_id']}").json()
            assert listed["labels"]["zone"] == "test-1"
        finally:
            started = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(timeout=30)
        took = time.monotonic() - started
        # The unit gives it TimeoutStopSec=10 before SIGKILL.
        assert code == 0 and took < 10, (code, took, log_path.read_text())
