"""Uninstall, and changed flags: each in its own root, on a copy of the run's full venv.

The copy (4 s) stands for an earlier install, so these runs take the upgrade path: pip
replaces Tether and finds every dependency already there.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from tests.install.conftest import VENV, Staged, install, snapshot

pytestmark = pytest.mark.e2e

INSTALLED = [
    "opt/tether/venv",
    "etc/tether/agent.toml",
    "etc/systemd/system/tether-agent.service",
    "etc/systemd/system/multi-user.target.wants/tether-agent.service",
    "etc/tmpfiles.d/tether.conf",
]


def exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def root_with_venv(tmp_path: Path, golden: Staged) -> Path:
    root = tmp_path / "root"
    shutil.copytree(golden.root / VENV, root / VENV, symlinks=True)
    return root


def test_from_the_source_tree_then_uninstall_keeps_data_and_purge_removes_it(
    tmp_path: Path, golden: Staged
):
    root = root_with_venv(tmp_path, golden)
    # The default source: this tree, built into a wheel from a clean copy.
    done = install("--root", str(root), "--no-enroll", "--pip-args", "--no-deps")
    assert "from wheel tether-0.1.0-py3-none-any.whl" in done.stdout
    assert all(exists(root / path) for path in INSTALLED)
    identity = root / "var/lib/tether/identity.json"
    identity.write_text("{}")  # as if enrolled: the data the uninstall must keep

    done = install("--root", str(root), "--uninstall")
    assert not any(exists(root / path) for path in INSTALLED), done.stdout
    assert not (root / "opt/tether").exists() and not (root / "etc/tether").exists()
    assert identity.read_text() == "{}"
    assert (root / "etc/sysusers.d/tether.conf").exists()
    assert "kept       /var/lib/tether" in done.stdout

    before = snapshot(root)
    again = install("--root", str(root), "--uninstall")
    assert snapshot(root) == before
    assert again.stdout.rstrip().endswith("Nothing changed.")

    purged = install("--root", str(root), "--uninstall", "--purge")
    assert not exists(root / "var/lib/tether")
    assert not exists(root / "etc/sysusers.d/tether.conf")
    assert "skipped    user tether: --root given" in purged.stdout


def test_a_changed_flag_rewrites_only_what_it_touches(
    tmp_path: Path, golden: Staged, tether_wheel: Path
):
    root = root_with_venv(tmp_path, golden)
    common = ["--root", str(root), "--no-enroll", "--wheel", str(tether_wheel)]
    light = ["--data-dir", "/srv/tether-agent"]
    install(*common, *light, "--label", "zone=a")
    unit = (root / "etc/systemd/system/tether-agent.service").read_text()
    assert "ReadWritePaths=/srv/tether-agent\n" in unit
    assert "WorkingDirectory=/srv/tether-agent\n" in unit
    assert "ConditionPathExists=/srv/tether-agent/identity.json\n" in unit
    assert not [line for line in unit.splitlines() if "/var/lib/tether" in line.split("#")[0]]
    assert (root / "srv/tether-agent").is_dir()
    assert "d /srv/tether-agent 0750 tether tether -" in (
        (root / "etc/tmpfiles.d/tether.conf").read_text()
    )

    before = snapshot(root)
    done = install(*common, *light, "--label", "zone=b", "--url", "https://cp.example.com/")
    after = snapshot(root)
    changed = {key for key in after if after[key] != before.get(key)}
    assert changed == {"etc/tether/agent.toml", "etc/tether"}  # the file, and so its folder
    assert [line for line in done.stdout.splitlines() if line.startswith("changed")] == [
        "changed    /etc/tether/agent.toml (agent settings)"
    ]
    settings = tomllib.loads((root / "etc/tether/agent.toml").read_text())
    assert settings == {
        "url": "https://cp.example.com",
        "data_dir": "/srv/tether-agent",
        "serve": "127.0.0.1:8501",
        "labels": {"zone": "b"},
    }

    # --uninstall finds the data dir in agent.toml.
    install("--root", str(root), "--uninstall", "--purge")
    assert not exists(root / "srv/tether-agent")
    assert (root / "srv").is_dir()
