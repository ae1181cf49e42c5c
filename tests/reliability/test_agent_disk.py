"""The agent's disk: full mid-download, a free-space reserve to keep, bytes flipped in its cache.

The disk-full test mounts a small tmpfs as the agent's data dir, which needs root (or
CAP_SYS_ADMIN): elsewhere it is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.conftest import enroll_agent, model_bytes
from tests.support.agent_process import eventually
from tests.support.operator import ROWS

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs, unmounted afterwards; skip where mounting is not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("disk-full test needs root to mount a small tmpfs; not root here")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"disk-full test cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    """Write zeros to `path` until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for block in (MIB, 4096):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\x00" * block)
    finally:
        os.close(fd)


def test_disk_full_mid_download_fails_cleanly_and_the_reserve_holds(
    admin, proxy, small_models, small_disk
):
    admin.environment("disk")
    admin.push("disk", small_models[0])
    second = admin.push("disk", model_bytes(0.4, padding=16 * MIB))
    third = admin.push("disk", model_bytes(0.6, padding=16 * MIB))
    first = admin.desire("disk", "disk", 1)
    data_dir = small_disk / "agent"
    agent = enroll_agent(admin, "disk", data_dir, url=proxy.url)  # reserve 0 (FAST)
    agent.log_path = small_disk.parent / "agent.log"  # not on the disk it fills
    agent.start()
    ballast = small_disk / "ballast"
    try:
        eventually(lambda: admin.converged("disk", first), timeout=30)

        # 1. Something else fills the disk while v2 downloads: the download fails, v1 serves.
        proxy.rate = 4 * MIB
        admin.desire("disk", "disk", 2)
        digest = second["artifact"]["sha256"]
        part = data_dir / "artifacts" / "partial" / f"{digest}.part"
        eventually(lambda: part.exists() and part.stat().st_size >= MIB, timeout=30)
        fill(ballast)
        proxy.rate = None

        def failed_for_space() -> bool:
            # The write fails (ENOSPC); each retry is then refused up front (no free disk).
            actual = admin.actual("disk", "disk")
            error = actual.get("error") or ""
            return actual.get("stage") == "download" and (
                "No space left" in error or "InsufficientDisk" in error
            )

        eventually(failed_for_space, timeout=30)
        assert "No space left on device" in agent.log()
        assert agent.serving_version("disk", ROWS) == 1
        assert not (data_dir / "artifacts" / "sha256" / digest).exists()  # nothing half-used
        assert agent.process is not None and agent.process.poll() is None  # still running
        assert "raised an exception" not in agent.log()  # bookkeeping never breaks a job

        # Space again: the download resumes where it stopped, verified, and v2 serves.
        ballast.unlink()
        revision = admin.revision("disk")
        eventually(lambda: admin.converged("disk", revision), timeout=30)
        assert agent.serving_version("disk", ROWS) == 2
        cached = data_dir / "artifacts" / "sha256" / digest
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest

        # 2. With a reserve of 30 MiB, v3 (16 MiB) does not fit: refused before a byte is written.
        agent.stop()
        agent.env["TETHER_FREE_DISK_RESERVE_BYTES"] = str(30 * MIB)
        agent.start()
        admin.desire("disk", "disk", 3)

        def refused_for_reserve() -> bool:
            actual = admin.actual("disk", "disk")
            return "free_disk_reserve_bytes" in (actual.get("error") or "")

        eventually(refused_for_reserve, timeout=30)
        assert agent.serving_version("disk", ROWS) == 2
        partial = data_dir / "artifacts" / "partial" / f"{third['artifact']['sha256']}.part"
        assert not partial.exists()
    finally:
        agent.stop()
        ballast.unlink(missing_ok=True)


def flip(path: Path, offset: int = 0) -> None:
    """Flip one byte of a file in place, as bad disk or a stray write would."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_a_corrupted_cache_file_is_caught_before_use_and_fetched_again(
    admin, proxy, small_models, tmp_path
):
    admin.environment("corrupt")
    one = admin.push("corrupt", small_models[0])
    admin.push("corrupt", small_models[1])
    first = admin.desire("corrupt", "corrupt", 1)
    agent = enroll_agent(admin, "corrupt", tmp_path / "agent", url=proxy.url).start()
    cached = agent.data_dir / "artifacts" / "sha256" / one["artifact"]["sha256"]
    try:
        eventually(lambda: admin.converged("corrupt", first), timeout=30)

        # 1. Flipped while the agent is stopped: found at start, not served, fetched again.
        agent.stop()
        flip(cached)
        proxy.mode = "down"
        agent.start()
        assert agent.serving_version("corrupt", ROWS) is None  # never the corrupted bytes
        assert "changed on disk" in agent.log()
        proxy.mode = "ok"
        eventually(lambda: agent.serving_version("corrupt", ROWS) == 1, timeout=30)
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == one["artifact"]["sha256"]

        # 2. Flipped while it runs (v1 kept in the cache behind v2), then v1 is desired again:
        # hashed again before it is loaded, and fetched again.
        admin.desire("corrupt", "corrupt", 2)
        eventually(lambda: agent.serving_version("corrupt", ROWS) == 2, timeout=30)
        assert cached.exists()
        flip(cached)
        seen = agent.log().count("changed on disk")
        back = admin.desire("corrupt", "corrupt", 1)
        eventually(lambda: admin.converged("corrupt", back), timeout=30)
        assert agent.serving_version("corrupt", ROWS) == 1
        assert agent.log().count("changed on disk") > seen
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == one["artifact"]["sha256"]
    finally:
        agent.stop(signal.SIGTERM)
