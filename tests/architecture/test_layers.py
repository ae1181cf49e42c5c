"""The import-linter contracts in pyproject.toml hold, and they would catch a broken layer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("common", "control_plane", "agent")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the packages under `tree`, with the project's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_contracts_are_kept():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "imported", "contract"),
    [
        ("control_plane/fleet.py", "agent.settings", "control_plane and agent never import"),
        ("agent/daemon.py", "control_plane.settings", "control_plane and agent never import"),
        ("common/names.py", "control_plane.settings", "common is shared by both sides"),
        ("control_plane/store/db.py", "control_plane.api.models", "control plane: HTTP above"),
        ("control_plane/desired.py", "control_plane.context", "control plane: HTTP above"),
        ("agent/local/state.py", "agent.sync.client", "agent: commands above the daemon"),
        ("agent/sync/poller.py", "agent.reports.loop", "agent: commands above the daemon"),
        ("agent/serving/app.py", "agent.daemon", "agent: commands above the daemon"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    copy_of_the_tree: Path, module: str, imported: str, contract: str
):
    target = copy_of_the_tree / module
    target.write_text(target.read_text() + f"\nimport {imported}  # a layer broken on purpose\n")
    done = lint_imports(copy_of_the_tree)
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), done.stdout
