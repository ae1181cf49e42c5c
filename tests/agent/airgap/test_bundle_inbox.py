"""`tether agent import-bundle` while the agent runs: it hands the bundle over, no serving gap.

A real offline agent process serves wine v1; the command runs as a real process too. The
agent applies the bundle through its own reconciler, so predictions keep being answered
throughout, by v1 and then by v2, and the agent is never restarted.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from agent.airgap.inbox import BundleReport, hand_off, wait_for_result
from agent.daemon import AgentDaemon
from agent.local.state import read_state_file
from common.cli import cli
from tests.agent.airgap.conftest import DEAD_URL, Site
from tests.agent.airgap.test_bundle_import import replacing_artifact, rewrite
from tests.support.agent_process import AgentProcess, eventually
from tests.support.agent_world import fast_settings
from tests.support.processes import TETHER

pytestmark = pytest.mark.e2e


@pytest.fixture
def agent(at_v1: Site) -> Iterator[AgentProcess]:
    """A real offline `tether agent run` on the site, serving wine v1."""
    process = AgentProcess(at_v1.data_dir, env={"TETHER_MODE": "offline"})
    process.start()
    try:
        yield process
    finally:
        process.stop()


def import_bundle(agent: AgentProcess, bundle: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TETHER, "agent", "import-bundle", str(bundle), "--data-dir", str(agent.data_dir), *args],
        capture_output=True,
        text=True,
        env=agent.env,
        timeout=60,
    )


def import_in_process(agent: AgentProcess, bundle: Path, *args: str):  # type: ignore[no-untyped-def]
    """The same command through CliRunner: quicker, for the cases that need no second process."""
    return CliRunner().invoke(
        cli, ["agent", "import-bundle", str(bundle), "--data-dir", str(agent.data_dir), *args]
    )


def inbox_of(agent: AgentProcess) -> Path:
    return agent.data_dir / "inbox"


class Predicting:
    """Predict in a loop on a thread; count the versions that answer and every failure."""

    def __init__(self, agent: AgentProcess, rows: list[dict]) -> None:
        self.versions: Counter[int] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(agent.url, rows), daemon=True)
        self._thread.start()

    def _run(self, url: str, rows: list[dict]) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{url}/predict/wine", json={"instances": rows})
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                    continue
                if response.status_code == 200:
                    self.versions[response.json()["version"]] += 1
                else:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@contextmanager
def predicting(agent: AgentProcess, rows: list[dict]) -> Iterator[Predicting]:
    loop = Predicting(agent, rows)
    try:
        yield loop
    finally:
        loop.stop()


def test_a_bundle_handed_to_the_running_agent_swaps_with_no_gap(
    agent: AgentProcess, bundle_of, wine_example
):
    pid = agent.process.pid  # type: ignore[union-attr]
    bundle = bundle_of()
    with predicting(agent, wine_example) as loop:
        eventually(lambda: loop.versions[1] >= 5)
        done = import_bundle(agent, bundle)
        eventually(lambda: loop.versions[2] >= 5)
    assert done.returncode == 0, done.stderr
    assert "Bundle revision" in done.stdout and "wine: now v2" in done.stdout
    assert f"Handed {bundle.name} to the running agent (pid {pid})" in done.stderr
    assert loop.errors == []
    assert set(loop.versions) == {1, 2}
    assert agent.process.poll() is None and agent.process.pid == pid  # type: ignore[union-attr]
    assert (agent.data_dir / "agent.lock").read_text() == str(pid)
    assert agent.serving_version("wine", wine_example) == 2
    inbox = inbox_of(agent)
    assert list(inbox.iterdir()) == []  # the bundle and the collected result are gone
    assert stat.S_IMODE(inbox.stat().st_mode) == 0o700
    state = read_state_file(agent.data_dir)
    assert state is not None and state.applied is not None
    assert state.applied.models["wine"].primary.version == 2 and state.last_error is None

    again = import_in_process(agent, bundle, "--json")  # what a direct import prints
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {
        "environment": "production",
        "revision": state.accepted_revision,
        "signed_by": json.loads(again.stdout)["signed_by"],
        "cached": 0,
        "reused": 1,
        "checked": 1,  # the member was hashed though the cache held it
        "swapped": [],
        "removed": [],
        "failed": {},
    }


def test_a_tampered_bundle_is_refused_by_the_running_agent_and_v1_keeps_serving(
    agent: AgentProcess, bundle_of, wine_example
):
    hostile = rewrite(bundle_of(), replacing_artifact(flip=True))
    with predicting(agent, wine_example) as loop:
        done = import_bundle(agent, hostile)
        eventually(lambda: loop.versions[1] >= 5)
    assert done.returncode == 1
    assert "bundle refused, nothing applied:" in done.stderr and "sha256" in done.stderr
    assert loop.errors == [] and set(loop.versions) == {1}
    assert agent.serving_version("wine", wine_example) == 1
    assert agent.process.poll() is None
    assert list(inbox_of(agent).iterdir()) == []
    state = read_state_file(agent.data_dir)
    assert state is not None and "-hostile.tar refused: artifact" in (state.last_error or "")
    missing = agent.data_dir.parent / "missing.tar"
    done = import_in_process(agent, missing)
    assert done.exit_code == 1
    assert f"cannot read {missing}: No such file or directory" in done.stderr
    big = agent.data_dir.parent / "zeros.tar"
    with open(big, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: all zeros, so not a tether bundle
    done = import_in_process(agent, big)
    assert done.exit_code == 1
    assert "Copying 64 MiB into the inbox of the running agent" in done.stderr  # not a terminal
    assert "bundle refused, nothing applied: the first member is not manifest.json" in done.stderr
    assert agent.serving_version("wine", wine_example) == 1


def test_no_wait_returns_at_once_and_the_agent_applies_it_later(
    agent: AgentProcess, bundle_of, wine_example
):
    assert agent.process is not None
    bundle = bundle_of()
    agent.process.send_signal(signal.SIGSTOP)  # the agent cannot apply anything meanwhile
    try:
        waited = import_in_process(agent, bundle, "--wait", "1")
        handed = import_bundle(agent, bundle, "--no-wait", "--json")
    finally:
        agent.process.send_signal(signal.SIGCONT)
    assert waited.exit_code == 1
    assert "did not apply the bundle within 1 s: the bundle waits in" in waited.stderr
    assert handed.returncode == 0, handed.stderr
    path = Path(json.loads(handed.stdout)["handed_off"])
    assert path.parent == inbox_of(agent) and path.name.endswith(".tar")
    eventually(lambda: agent.serving_version("wine", wine_example) == 2)
    result = path.with_name(path.name.removesuffix(".tar") + ".result.json")
    eventually(result.exists)
    report = BundleReport.model_validate_json(result.read_bytes())
    assert report.refused is None and report.failed == {}
    # Both bundles were applied, in order: the first swapped, the second found v2 in place.
    # The agent writes a result, then removes its bundle: wait for both.
    eventually(lambda: sorted(p.suffix for p in inbox_of(agent).iterdir()) == [".json", ".json"])
    assert not any(p.name.endswith(".tar") for p in inbox_of(agent).iterdir())


def test_junk_in_the_inbox_never_stops_the_agent(at_v1: Site, bundle_of, wine_example):
    inbox = at_v1.data_dir / "inbox"
    inbox.mkdir(mode=0o755)
    (inbox / "crashed.tar.part").write_bytes(b"half a bundle")  # a copy cut off by a crash
    (inbox / "notes.txt").write_text("not a bundle")
    agent = AgentProcess(at_v1.data_dir, env={"TETHER_MODE": "offline"})
    with agent:
        assert stat.S_IMODE(inbox.stat().st_mode) == 0o700
        assert not (inbox / "crashed.tar.part").exists()
        (inbox / "garbage.tar").write_bytes(os.urandom(5000))
        (inbox / "folder.tar").mkdir()  # unreadable as a file, and cannot be unlinked
        for name in ("garbage", "folder"):
            eventually(lambda name=name: (inbox / f"{name}.result.json").exists())
        garbage = BundleReport.model_validate_json((inbox / "garbage.result.json").read_bytes())
        folder = BundleReport.model_validate_json((inbox / "folder.result.json").read_bytes())
        assert garbage.refused and "tar" in garbage.refused
        assert folder.refused and "cannot read" in folder.refused
        assert not (inbox / "garbage.tar").exists() and (inbox / "notes.txt").exists()
        assert agent.serving_version("wine", wine_example) == 1
        time.sleep(1.2)  # a few more scans: the folder is not applied again and again
        assert agent.log().count("bundle folder.tar handed in") == 1
        done = import_in_process(agent, bundle_of())  # and bundles still apply
        assert done.exit_code == 0, done.output
        assert agent.serving_version("wine", wine_example) == 2
        assert agent.process is not None and agent.process.poll() is None
    assert "Traceback" not in agent.log()


def test_an_online_agent_applies_bundles_from_its_inbox_too(at_v1: Site, bundle_of):
    """Its poller meanwhile fails to reach the control plane and backs off."""
    daemon = AgentDaemon(fast_settings(at_v1.data_dir, mode="online", url=DEAD_URL), serve=False)
    daemon.start()
    try:
        assert daemon.slots.get("wine").primary.version == 1  # type: ignore[union-attr]
        report = wait_for_result(hand_off(bundle_of(), at_v1.data_dir), 20, lambda: True)
        assert (report.swapped, report.versions, report.failed) == (["wine"], {"wine": 2}, {})
        assert daemon.slots.get("wine").primary.version == 2  # type: ignore[union-attr]
    finally:
        daemon.stop(timeout=2)


def import_with(agent: AgentProcess, bundle: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """import_in_process, with settings of the command's own."""
    command = ["agent", "import-bundle", str(bundle), "--data-dir", str(agent.data_dir)]
    return CliRunner().invoke(cli, command, env=env)


def test_the_hand_off_refuses_a_device_a_fifo_and_a_bundle_over_the_limits(
    agent: AgentProcess, bundle_of, wine_example, tmp_path: Path
):
    """A symlink to /dev/zero once copied 1 GiB into the inbox in 4 s, and would not stop."""
    zero = tmp_path / "zero.tar"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.tar"
    os.mkfifo(fifo)  # nobody writes to it: opening it to read would wait forever
    for path, kind in ((zero, "a character device"), (fifo, "a FIFO")):
        started = time.monotonic()
        done = import_in_process(agent, path)
        assert time.monotonic() - started < 5
        assert done.exit_code == 1 and isinstance(done.exception, SystemExit), done.output
        assert (
            f"bundle refused, nothing applied: cannot read {path}: it is {kind}, not a regular file"
            in done.stderr
        )
    bundle = bundle_of()
    size = bundle.stat().st_size
    too_big = import_with(agent, bundle, {"TETHER_MAX_BUNDLE_BYTES": str(size - 1)})
    assert too_big.exit_code == 1, too_big.output
    assert f"is {size} bytes, more than max_bundle_bytes ({size - 1})" in too_big.stderr
    no_room = import_with(agent, bundle, {"TETHER_FREE_DISK_RESERVE_BYTES": str(2**62)})
    assert no_room.exit_code == 1, no_room.output
    assert f"the bundle needs {size} bytes in {inbox_of(agent)}" in no_room.stderr
    assert "must stay free (free_disk_reserve_bytes)" in no_room.stderr
    assert list(inbox_of(agent).iterdir()) == []  # not a byte copied, no .part left
    assert agent.serving_version("wine", wine_example) == 1
    assert import_in_process(agent, bundle).exit_code == 0  # within the limits it applies
    assert agent.serving_version("wine", wine_example) == 2


# A copy into the inbox that stops after its first chunk, until it is killed.
STUCK_COPY = """
import sys, time
from pathlib import Path
from agent.airgap.inbox import hand_off

def stuck(count):
    print("copying", flush=True)
    time.sleep(120)

hand_off(Path(sys.argv[1]), Path(sys.argv[2]), progress=stuck)
"""


def test_a_copy_killed_mid_way_leaves_no_part_behind(agent: AgentProcess, bundle_of):
    """Before, its .part stayed until the agent restarted."""
    copy = subprocess.Popen(
        [sys.executable, "-c", STUCK_COPY, str(bundle_of()), str(agent.data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=agent.env,
    )
    try:
        assert copy.stdout is not None and copy.stdout.readline() == "copying\n"
        (part,) = inbox_of(agent).glob("*.tar.part")
        os.utime(part, (time.time() - 3600,) * 2)  # idle for an hour: only its lock keeps it
        time.sleep(1.5)  # three inbox scans
        assert part.exists()  # its copy still runs (stuck on a slow medium, say)
    finally:
        copy.kill()
        copy.communicate()
    eventually(lambda: not part.exists(), timeout=5)
    assert f"removed {part.name} from the inbox: its copy was cut off" in agent.log()


def test_the_next_hand_off_removes_the_parts_of_copies_cut_off(at_v1: Site, bundle_of):
    """With no agent scanning the inbox: the part of a copy cut off goes, a live copy's stays."""
    inbox = at_v1.data_dir / "inbox"
    inbox.mkdir(mode=0o700)
    old = time.time() - 3600
    cut_off = inbox / "cut-off.tar.part"
    cut_off.write_bytes(b"half a bundle")
    os.utime(cut_off, (old, old))
    just_made = inbox / "just-made.tar.part"  # not yet locked by its copy: given a moment
    just_made.write_bytes(b"")
    live = inbox / "live.tar.part"
    live.write_bytes(b"a copy in progress")
    os.utime(live, (old, old))
    bundle = bundle_of()
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as hand_off holds the part it writes
        handed = hand_off(bundle, at_v1.data_dir)
        assert not cut_off.exists() and just_made.exists() and live.exists()
    assert handed.path.read_bytes() == bundle.read_bytes()
    assert sorted(p.name for p in inbox.iterdir()) == sorted(
        [handed.path.name, "just-made.tar.part", "live.tar.part"]
    )
