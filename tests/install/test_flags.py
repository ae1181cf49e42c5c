"""The installer's flags: every one documented, bad ones refused before anything changes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.install.conftest import BUILD_WHEELHOUSE, INSTALLER, clean_env, run_script


def flags_in_parser(script: Path) -> set[str]:
    """The flags a script's `case` arms accept."""
    arms = re.findall(r"^\s+((?:-[-a-z]+(?: \| )?)+)\)", script.read_text(), re.MULTILINE)
    return {flag for arm in arms for flag in arm.split(" | ")}


@pytest.mark.parametrize("script", [INSTALLER, BUILD_WHEELHOUSE], ids=lambda p: p.name)
def test_help_documents_every_flag(script: Path):
    done = run_script(script, "--help")
    assert done.returncode == 0, done.stderr
    flags = flags_in_parser(script)
    assert {"--help", "-h"} <= flags and len(flags) > 4, flags
    undocumented = {flag for flag in flags if not re.search(rf"(^|\s){flag}\b", done.stdout)}
    assert not undocumented, f"{script.name} --help does not mention {sorted(undocumented)}"


ENROLL = ["--url", "http://127.0.0.1:9", "--env", "production", "--token", "tether_enroll_x"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frobnicate"], "unknown flag --frobnicate"),
        (["stray"], "unexpected argument 'stray'"),
        (["--no-enroll", "--url"], "--url needs a value"),
        (["--env", "production", "--token", "t"], "enrolling needs --url"),
        (["--url", "http://h:1", "--token", "t"], "enrolling needs --env"),
        (["--url", "http://h:1", "--env", "prod"], "--token (or $TETHER_ENROLLMENT_TOKEN)"),
        (["--no-enroll", "--wheelhouse", "/nonexistent/wheels"], "--wheelhouse /nonexistent"),
        (["--no-enroll", "--wheel", "/nonexistent/tether.whl"], "--wheel /nonexistent"),
        (["--no-enroll", "--url", "ftp://example.com"], "is not an http:// or https:// URL"),
        (["--no-enroll", "--env", "Prod!"], "--env Prod! is not an environment name"),
        (["--no-enroll", "--serve", "localhost"], "--serve localhost is not HOST:PORT"),
        (["--no-enroll", "--serve", "127.0.0.1:70000"], "is not HOST:PORT"),
        (["--no-enroll", "--label", "novalue"], "--label novalue is not KEY=VALUE"),
        (["--no-enroll", "--label", "a=1", "--label", "a=2"], "--label a is given twice"),
        (["--no-enroll", "--data-dir", "relative/dir"], "is not an absolute path"),
        (["--no-enroll", "--data-dir", "/var/lib/../etc"], "must not contain"),
        (["--no-enroll", "--data-dir", "/var/lib/te ther"], "letters, digits"),
        (["--no-enroll", "--no-enroll=yes"], "--no-enroll takes no value"),
        (["--purge"], "--purge only goes with --uninstall"),
        (["--no-enroll", "--python", "/nonexistent/python"], "--python /nonexistent/python"),
        ([*ENROLL, "--pin", "SHA256:a b"], "--pin must not contain spaces"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_bad_flags_are_refused_and_nothing_is_written(tmp_path: Path, args, message):
    root = tmp_path / "root"
    root.mkdir()
    done = run_script(INSTALLER, "--root", str(root), *args)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert done.stderr.startswith("install-agent.sh: error: ")
    assert "--help" in done.stderr
    assert list(root.iterdir()) == [], "a refused run must not write anything"


def test_the_wheelhouse_must_hold_a_tether_wheel(tmp_path: Path):
    empty = tmp_path / "wheels"
    empty.mkdir()
    done = run_script(
        INSTALLER, "--root", str(tmp_path / "root"), "--no-enroll", "--wheelhouse", str(empty)
    )
    assert done.returncode == 2
    assert f"--wheelhouse {empty} holds no tether-*.whl" in done.stderr


DROP_TO_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_without_root_it_needs_root():
    if os.geteuid() != 0:
        done = subprocess.run(
            ["bash", str(INSTALLER), "--no-enroll"],
            capture_output=True,
            text=True,
            env=clean_env(),
            cwd="/",
        )
    else:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root, and setpriv is not here to drop to another user")
        # The checkout may sit in a directory only root can read (a clone into `mktemp -d`):
        # the unprivileged user runs a copy of the installer from a directory it can read.
        with tempfile.TemporaryDirectory(prefix="tether-installer-") as readable:
            os.chmod(readable, 0o755)
            installer = shutil.copy(INSTALLER, readable)
            os.chmod(installer, 0o644)
            done = subprocess.run(
                [*DROP_TO_NOBODY, "bash", installer, "--no-enroll"],
                capture_output=True,
                text=True,
                env=clean_env(),
                cwd="/",
            )
    assert done.returncode == 1, done.stderr
    assert "needs root" in done.stderr and "--root DIR" in done.stderr


def test_build_wheelhouse_refuses_unknown_flags():
    done = run_script(BUILD_WHEELHOUSE, "--bogus")
    assert done.returncode == 2
    assert "unknown flag --bogus" in done.stderr
    done = run_script(BUILD_WHEELHOUSE, "--python-version", "three")
    assert done.returncode == 2
    assert "--python-version three is not X.Y" in done.stderr


@pytest.mark.parametrize("script", [INSTALLER, BUILD_WHEELHOUSE], ids=lambda p: p.name)
def test_scripts_are_shellcheck_clean(script: Path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
