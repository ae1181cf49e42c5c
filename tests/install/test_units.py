"""The systemd units: hardened, and valid for systemd-analyze where it is installed."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.install.conftest import UNITS

EXEC = "/opt/tether/venv/bin/tether"


def service_section(unit: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    return parser["Service"]


@pytest.mark.parametrize(
    ("unit", "command", "user", "data_dir"),
    [
        (UNITS[0], "agent run --config /etc/tether/agent.toml", "tether", "/var/lib/tether"),
        (
            UNITS[1],
            "server --config /etc/tether/control-plane.toml",
            "tether-server",
            "/var/lib/tether-server",
        ),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else None,
)
def test_units_are_hardened(unit: Path, command: str, user: str, data_dir: str):
    service = service_section(unit)
    assert service["ExecStart"] == f"{EXEC} {command}"
    assert service["User"] == user
    assert service["ReadWritePaths"] == data_dir
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert int(service["RestartSec"]) > 0
    assert int(service["TimeoutStopSec"]) >= 10


def test_systemd_analyze_verify(tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    # verify checks that ExecStart exists: point it at a stand-in for the venv's tether.
    stand_in = tmp_path / "tether"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    copies = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(EXEC, str(stand_in)))
        copies.append(str(copy))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *copies], capture_output=True, text=True
    )
    problems = [line for line in done.stderr.splitlines() if "tether" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
