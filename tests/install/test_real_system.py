"""The installer without --root, on a throwaway copy of the system.

A private mount namespace gets a copy of /etc and empty /opt, /var/lib and /run/systemd, so
`useradd`, the chowns, the enrollment as the tether user and the systemctl calls (a stand-in
that records them) happen for real without touching this machine. Needs root and unshare.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.install.conftest import INSTALLER, VENV, Staged, clean_env, venv_python
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e

# Runs inside the namespace; set -e stops it before the installer if any mount fails.
NAMESPACE = r"""
set -euo pipefail
work=$1; shift
mkdir -p "$work/etc" "$work/bin"
cp -a /etc/. "$work/etc/"
mount --bind "$work/etc" /etc
mount -t tmpfs tmpfs /opt
mount -t tmpfs tmpfs /var/lib
mkdir -p /run/systemd
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/system
mountpoint -q /etc && mountpoint -q /opt && mountpoint -q /var/lib
printf '#!/bin/sh\necho "$*" >>%s/systemctl.log\n[ "$1" != is-active ]\n' "$work" \
  >"$work/bin/systemctl"
chmod +x "$work/bin/systemctl"
export PATH=$work/bin:$PATH
mkdir -p /opt/tether
cp -a "$STAGED_VENV" /opt/tether/venv   # as if installed before: the same build, unchanged

for run in first second; do
  bash "$INSTALLER" --python "$PYTHON" "$@" >"$work/$run.out" 2>&1
done
{
  echo "passwd=$(getent passwd tether)"
  echo "config=$(stat -c '%a %U:%G' /etc/tether/agent.toml)"
  echo "data=$(stat -c '%a %U:%G' /var/lib/tether)"
  echo "identity=$(stat -c '%a %U:%G' /var/lib/tether/identity.json)"
  echo "wants=$(readlink /etc/systemd/system/multi-user.target.wants/tether-agent.service)"
} >"$work/facts"
bash "$INSTALLER" --uninstall >"$work/uninstall.out" 2>&1
echo "kept=$(stat -c '%U' /var/lib/tether/identity.json) $(getent passwd tether | cut -d: -f1)" \
  >>"$work/facts"
bash "$INSTALLER" --uninstall --purge >"$work/purge.out" 2>&1
echo "purged=$(ls -A /var/lib) $(getent passwd tether || true)" >>"$work/facts"
"""


def can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.skipif(not can_unshare(), reason="needs root and a private mount namespace")
def test_real_install_creates_the_user_enrolls_as_it_and_enables_the_unit(
    golden: Staged, tmp_path: Path
):
    python = venv_python()
    if not python.startswith("/usr/"):
        pytest.skip(f"no system Python 3.11 the tether user could run (only {python})")
    work = tmp_path / "ns"
    with ServerProcess(tmp_path / "control-plane") as server:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            assert http.put("/api/v1/environments/edge", json={}).status_code in (200, 201)
            token = http.post(
                "/api/v1/tokens", json={"role": "enrollment", "environment": "edge"}
            ).json()["token"]
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", NAMESPACE, "ns",
             str(work), "--wheelhouse", str(golden.wheelhouse), "--url", server.url,
             "--env", "edge", "--label", "zone=ns"],
            env=clean_env(
                TETHER_ENROLLMENT_TOKEN=token,
                INSTALLER=str(INSTALLER),
                PYTHON=python,
                STAGED_VENV=str(golden.root / VENV),
            ),
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
        outputs = {p.name: p.read_text() for p in work.glob("*.out")} if work.exists() else {}
        assert done.returncode == 0, (done.stdout, done.stderr, outputs)
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            (agent,) = http.get("/api/v1/agents", params={"environment": "edge"}).json()["agents"]
    assert agent["labels"] == {"zone": "ns"}

    first, second = outputs["first.out"], outputs["second.out"]
    assert "changed    user tether: created (system user, no login shell" in first
    assert f"changed    enrollment: {agent['id']} in edge" in first
    assert "unchanged  /opt/tether/venv" in first
    assert "changed    tether-agent.service (restarted)" in first
    assert [line for line in second.splitlines() if line.startswith("changed")] == [
        "changed    tether-agent.service (started)"  # the stand-in says it is not running
    ], second

    facts = dict(line.split("=", 1) for line in (work / "facts").read_text().splitlines())
    assert facts["passwd"].startswith("tether:x:")
    assert facts["passwd"].endswith(":Tether agent:/var/lib/tether:/usr/sbin/nologin")
    assert facts["config"] == "640 root:tether"
    assert facts["data"] == "750 tether:tether"
    assert facts["identity"] == "600 tether:tether"
    assert facts["wants"] == "/etc/systemd/system/tether-agent.service"
    assert facts["kept"] == "tether tether"
    assert facts["purged"].strip() == ""

    calls = (work / "systemctl.log").read_text().splitlines()
    assert calls[:2] == ["daemon-reload", "restart tether-agent.service"]
    assert "disable --now tether-agent.service" in calls, calls
