"""Fixtures: run the installer scripts, an offline wheelhouse built once per session."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "scripts" / "install-agent.sh"
BUILD_WHEELHOUSE = REPO / "scripts" / "build-wheelhouse.sh"
VENV = "opt/tether/venv"
UNITS = [REPO / "config" / "tether-agent.service", REPO / "config" / "tether-server.service"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without TETHER_* settings, which would reach the installed agent."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    return {**env, **extra}


def run_script(
    script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a script of scripts/ and return its result, whatever its exit status."""
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=timeout,
        cwd="/",
    )


@functools.cache
def venv_python() -> str:
    """The Python to build venvs with: the system's, which a service user can run, if it can."""
    for candidate in ("/usr/bin/python3.11", "/usr/bin/python3"):
        check = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
        if Path(candidate).exists() and subprocess.run([candidate, "-c", check]).returncode == 0:
            return candidate
    return sys.executable


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run install-agent.sh and assert it succeeded."""
    done = run_script(INSTALLER, "--python", venv_python(), *args, env=env)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its type, mode, owner, mtime and content hash or target."""
    entries: dict[str, tuple] = {}
    for path in [root, *root.rglob("*")]:
        status = path.lstat()
        if path.is_symlink():
            what: str = "link:" + os.readlink(path)
        elif path.is_dir():
            what = "dir"
        else:
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        key = str(path.relative_to(root))
        entries[key] = (what, status.st_mode, status.st_uid, status.st_gid, status.st_mtime_ns)
    return entries


@dataclass
class Staged:
    root: Path
    wheelhouse: Path
    port: int
    first_run: str

    @property
    def args(self) -> list[str]:
        """The installer's flags for this root (add --no-enroll or the enrollment's)."""
        return [
            "--root", str(self.root),
            "--wheelhouse", str(self.wheelhouse),
            "--serve", f"127.0.0.1:{self.port}",
            "--label", "zone=test-1",
        ]  # fmt: skip

    @property
    def tether(self) -> list[str]:
        """The installed `tether` script, run by the venv's Python (its #! names /opt)."""
        return [str(self.root / VENV / "bin" / "python"), str(self.root / VENV / "bin" / "tether")]


def build_golden(folder: Path) -> Staged:
    """Build the wheelhouse, then install from it into a staging root (about 40 s)."""
    wheelhouse = folder / "wheelhouse"
    done = run_script(BUILD_WHEELHOUSE, "--dest", str(wheelhouse), "--python", sys.executable)
    if done.returncode != 0 and "Could not find a version" in done.stderr + done.stdout:
        pytest.skip(f"cannot build a wheelhouse without the package index: {done.stderr[-500:]}")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    golden = Staged(folder / "root", wheelhouse, free_port(), "")
    golden.first_run = install(*golden.args, "--no-enroll").stdout
    return golden


@pytest.fixture(scope="session")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    """One wheelhouse and one full install for the whole run, read-only for the tests.

    Shared by the xdist workers through a lock (xdist_group does not keep this package on one
    worker under pytest 9), so the 40 s are spent once.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / "tether-install"
    with open(shared / "tether-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = folder / "golden.json"
        if record.exists():
            golden = Staged(**json.loads(record.read_text()))
            golden.root, golden.wheelhouse = Path(golden.root), Path(golden.wheelhouse)
            return golden
        folder.mkdir(exist_ok=True)
        golden = build_golden(folder)
        fields = {**golden.__dict__, "root": str(golden.root), "wheelhouse": str(golden.wheelhouse)}
        record.write_text(json.dumps(fields))
        return golden


@pytest.fixture(scope="session")
def wheelhouse(golden: Staged) -> Path:
    """An offline wheelhouse of this tree, made by scripts/build-wheelhouse.sh (needs PyPI)."""
    return golden.wheelhouse


@pytest.fixture(scope="session")
def tether_wheel(wheelhouse: Path) -> Path:
    return next(wheelhouse.glob("tether-*.whl"))


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory, golden: Staged) -> Staged:
    """This worker's own copy of the full install, for tests that run or change it."""
    root = tmp_path_factory.mktemp("staging") / "root"
    shutil.copytree(golden.root, root, symlinks=True)
    return Staged(root, golden.wheelhouse, golden.port, golden.first_run)
