"""Hand a bundle to the running agent through a directory, and apply it there.

    DATA_DIR/inbox/                         mode 0700, made by the agent as it starts
    DATA_DIR/inbox/<name>.tar.part          a copy in progress (`tether agent import-bundle`)
    DATA_DIR/inbox/<name>.tar               handed off: fsynced, then renamed from .tar.part
    DATA_DIR/inbox/<name>.result.json       the agent's answer, written atomically

The agent looks at the inbox every `INBOX_INTERVAL` seconds and applies each `.tar` with
`agent.airgap.bundle.apply_bundle` through its own reconciler, so the inference server swaps
models with no gap. It then writes the result and removes the bundle. Other files are left
alone; a result nobody collected (`--no-wait`) goes after `STALE_RESULT` seconds.

The copy is bounded: only a regular file (a device or a FIFO never ends), at most
`max_bundle_bytes`, and only while `free_disk_reserve_bytes` stay free; exactly the size the
file had when opened. Its writer holds an exclusive flock on the `.part` until it is renamed,
so a `.part` nobody holds is a copy that was cut off (killed, crashed, the host restarted): each
inbox scan and each hand-off removes it (`remove_stale_parts`), once nobody wrote to it for
`PART_GRACE` seconds (the moment between creating a part and locking it). A `.part` the
cleaner cannot open to tell goes once nobody wrote to it for `STALE_PART` seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import BaseModel, Field, ValidationError

from agent.airgap.bundle import BundleRefused, ImportResult, apply_bundle
from agent.airgap.bundle_tar import open_bundle
from agent.errors import AgentError
from agent.local.datadir import inbox_dir
from agent.sync.reconciler import Reconciler
from common.files import fsync_directory, write_atomic

log = logging.getLogger("tether.agent.inbox")

BUNDLE_SUFFIX = ".tar"
PART_SUFFIX = ".tar.part"
RESULT_SUFFIX = ".result.json"
INBOX_INTERVAL = 0.5
PART_GRACE = 5.0
STALE_PART = 600.0
STALE_RESULT = 86400.0
COPY_CHUNK = 1024 * 1024


class InboxError(AgentError):
    """The bundle could not be handed to the running agent."""


class BundleReport(BaseModel):
    """What applying one bundle did, as the import command prints it."""

    refused: str | None = None  # why the bundle was refused (then nothing changed)
    error: str | None = None  # the agent failed to apply it for another reason
    environment: str = ""
    revision: int = 0
    signed_by: str = ""
    cached: int = 0
    reused: int = 0
    checked: int = 0  # files in the bundle whose bytes matched the signed manifest
    swapped: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    waiting: list[str] = Field(default_factory=list)  # not tried: the agent was stopping
    versions: dict[str, int] = Field(default_factory=dict)  # the primary of each model swapped

    @classmethod
    def of(cls, result: ImportResult) -> BundleReport:
        """Summarise an import's result."""
        outcome = result.outcome
        assert outcome is not None
        manifest = result.manifest
        return cls(
            environment=manifest.environment,
            revision=manifest.revision,
            signed_by=result.signed_by,
            cached=len(result.cached),
            reused=len(result.reused),
            checked=len(result.checked),
            swapped=outcome.swapped,
            removed=outcome.removed,
            failed=outcome.failed,
            waiting=outcome.waiting,
            versions={name: manifest.models[name].primary.version for name in outcome.swapped},
        )


# --- the importing side (`tether agent import-bundle`) ------------------------------------------


@dataclass
class HandOff:
    """A bundle now in the agent's inbox."""

    name: str
    path: Path

    @property
    def result_path(self) -> Path:
        return self.path.with_name(self.name + RESULT_SUFFIX)


def hand_off(
    bundle: Path,
    data_dir: Path,
    *,
    max_bytes: int | None = None,
    reserve_bytes: int = 0,
    progress: Callable[[int], None] | None = None,
) -> HandOff:
    """Copy `bundle` into the running agent's inbox, fsynced, and rename it into place.

    Raise BundleRefused for a file that is no bundle to copy (not a regular file, over
    `max_bytes`), InboxError when the copy fails or would leave less than `reserve_bytes` free.
    `progress` is told the bytes copied by each chunk.
    """
    inbox = inbox_dir(data_dir)
    if not inbox.is_dir():
        raise InboxError(
            f"the running agent has no inbox ({inbox}): it predates bundle hand-off; stop it, "
            "import, then start it again"
        )
    remove_stale_parts(inbox)
    # Unique, in hand-off order, and naming the file the operator gave (for the agent's log).
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", bundle.name.removesuffix(BUNDLE_SUFFIX))[:80]
    name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}-{stem}"
    part = inbox / (name + PART_SUFFIX)
    final = inbox / (name + BUNDLE_SUFFIX)
    with open_bundle(bundle, max_bytes) as source:
        size = os.fstat(source.fileno()).st_size
        free = shutil.disk_usage(inbox).free
        if free - size < reserve_bytes:
            raise InboxError(
                f"the bundle needs {size} bytes in {inbox} but only {free} are free and "
                f"{reserve_bytes} must stay free (free_disk_reserve_bytes)"
            )
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as target:
                # Held until the rename: a .part no process holds is a copy cut off.
                fcntl.flock(target.fileno(), fcntl.LOCK_EX)
                _give_to_inbox_owner(target.fileno(), inbox)
                _copy(source, target, size, bundle, progress)
                target.flush()
                os.fsync(target.fileno())
                os.replace(part, final)
        except BaseException as error:  # Ctrl-C too: leave no part behind
            with contextlib.suppress(OSError):
                part.unlink()
            if isinstance(error, OSError):
                raise InboxError(
                    f"cannot copy {bundle} into {inbox}: {error.strerror or error}"
                ) from None
            raise
    fsync_directory(inbox)
    return HandOff(name=name, path=final)


def _copy(
    source: IO[bytes],
    target: IO[bytes],
    size: int,
    bundle: Path,
    progress: Callable[[int], None] | None,
) -> None:
    """Copy exactly the `size` bytes the file had when opened (the checks were made on it)."""
    remaining = size
    while remaining:
        chunk = source.read(min(COPY_CHUNK, remaining))
        if not chunk:
            raise InboxError(f"{bundle} shrank while it was copied: copy it again")
        target.write(chunk)
        remaining -= len(chunk)
        if progress is not None:
            progress(len(chunk))
    if source.read(1):
        raise InboxError(f"{bundle} grew while it was copied: copy it once it is whole")


def remove_stale_parts(inbox: Path, grace: float = PART_GRACE) -> list[str]:
    """Remove every .part whose copy was cut off; return their names.

    One no process holds a lock on goes once nobody wrote to it for `grace` seconds; one this
    process cannot open to tell goes after `STALE_PART` seconds.
    """
    removed = []
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(inbox) as entries:
        for entry in entries:
            part = Path(entry.path)
            if entry.name.endswith(PART_SUFFIX) and _remove_if_cut_off(part, now, grace):
                log.info("removed %s from the inbox: its copy was cut off", entry.name)
                removed.append(entry.name)
    return removed


def _remove_if_cut_off(part: Path, now: float, grace: float) -> bool:
    try:
        info = part.lstat()
    except OSError:
        return False
    idle = now - info.st_mtime
    if not stat.S_ISREG(info.st_mode) or idle < grace:
        return False
    try:
        fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return idle >= STALE_PART and _unlink(part)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its copy is still running
        except OSError:  # no locks on this file system: go by age alone
            return idle >= STALE_PART and _unlink(part)
        # Unlinked while locked, and only if the name is still this file's.
        return os.fstat(fd).st_ino == info.st_ino and _unlink(part)
    finally:
        os.close(fd)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True


def _give_to_inbox_owner(fd: int, inbox: Path) -> None:
    # Run as root (sudo) for an agent running as its own user: the agent must read the copy.
    if os.geteuid() == 0:
        owner = inbox.stat()
        os.fchown(fd, owner.st_uid, owner.st_gid)


def wait_for_result(
    handed: HandOff, timeout: float, agent_alive: Callable[[], bool]
) -> BundleReport:
    """Wait up to `timeout` seconds for the agent's result, then read and remove it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = handed.result_path.read_bytes()
        except FileNotFoundError:
            raw = None
        if raw is not None:
            handed.result_path.unlink(missing_ok=True)
            try:
                return BundleReport.model_validate_json(raw)
            except ValidationError as error:
                raise InboxError(
                    f"the agent's result {handed.result_path} is unreadable: {error}"
                ) from None
        waiting = (
            f"the bundle waits in {handed.path}; the agent applies it as it runs "
            "(see `tether agent status`)"
        )
        if not agent_alive():
            raise InboxError(f"the agent stopped before applying the bundle: {waiting}")
        if time.monotonic() >= deadline:
            raise InboxError(f"the agent did not apply the bundle within {timeout:g} s: {waiting}")
        time.sleep(0.1)


def process_alive(pid: int | None) -> bool:
    """Tell whether process `pid` exists (True when unknown: keep waiting)."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


# --- the agent's side -------------------------------------------------------------------------


class InboxWatcher:
    """Apply the bundles handed to a running agent, one at a time, on a thread of its own."""

    def __init__(
        self,
        data_dir: Path,
        reconciler: Reconciler,
        *,
        interval: float = INBOX_INTERVAL,
        max_bundle_bytes: int | None = None,
    ) -> None:
        self.inbox = inbox_dir(data_dir)
        self.reconciler = reconciler
        self.interval = interval
        self.max_bundle_bytes = max_bundle_bytes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stuck: set[str] = set()  # bundles that could not be removed: never retried

    def prepare(self) -> None:
        """Make the inbox (mode 0700) and remove every .part no copy holds, however recent:
        a copy starts only while an agent runs, so one found unheld as the agent starts was
        cut off by a crash or a restart."""
        self.inbox.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.inbox, 0o700)
        remove_stale_parts(self.inbox, grace=0.0)
        self._clean()

    def start(self) -> None:
        """Watch the inbox until `stop`."""
        self._thread = threading.Thread(target=self._run, name="tether-inbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 0.0) -> bool:
        """Stop watching; wait up to `timeout` for a bundle being applied; return whether done."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception:  # a broken inbox must never stop the agent serving
                log.exception("inbox scan failed")
            self._stop.wait(self.interval)

    def scan_once(self) -> int:
        """Apply every bundle waiting now, oldest name first; return how many."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.inbox))
        except OSError as error:
            log.warning("cannot read the inbox %s: %s", self.inbox, error)
            return 0
        done = 0
        for name in names:
            if self._stop.is_set():
                break
            if not name.endswith(BUNDLE_SUFFIX) or name in self._stuck:
                continue
            self.apply(self.inbox / name)
            done += 1
        # Every scan, not only after a bundle: a copy killed mid-way must not wait for one.
        if any(name.endswith(PART_SUFFIX) for name in names):
            remove_stale_parts(self.inbox)
        if done:
            self._clean()
        return done

    def apply(self, bundle: Path) -> BundleReport:
        """Apply one bundle from the inbox, write its result, and remove it."""
        name = bundle.name.removesuffix(BUNDLE_SUFFIX)
        log.info("bundle %s handed in: applying it", bundle.name)
        try:
            applied = apply_bundle(bundle, self.reconciler, max_bytes=self.max_bundle_bytes)
            report = BundleReport.of(applied)
        except BundleRefused as error:
            log.error("bundle %s refused, nothing applied: %s", bundle.name, error)
            report = BundleReport(refused=str(error))
        except Exception as error:  # the disk, a bug: answer, and keep serving
            log.exception("bundle %s could not be applied", bundle.name)
            report = BundleReport(error=f"{type(error).__name__}: {error}")
        try:
            write_atomic(
                self.inbox / (name + RESULT_SUFFIX), report.model_dump_json().encode(), mode=0o600
            )
        except OSError as error:
            log.error("cannot write the result of bundle %s: %s", bundle.name, error)
        try:
            bundle.unlink(missing_ok=True)
        except OSError as error:
            log.error("cannot remove bundle %s from the inbox: %s", bundle.name, error)
            self._stuck.add(bundle.name)
        return report

    def _clean(self) -> None:
        """Remove the results nobody collected (`--no-wait`) for `STALE_RESULT` seconds."""
        now = time.time()
        with contextlib.suppress(OSError), os.scandir(self.inbox) as entries:
            for entry in entries:
                if not entry.name.endswith(RESULT_SUFFIX):
                    continue
                with contextlib.suppress(OSError):
                    if (
                        entry.is_file(follow_symlinks=False)
                        and now - entry.stat(follow_symlinks=False).st_mtime >= STALE_RESULT
                    ):
                        os.unlink(entry.path)
                        log.info("removed stale %s from the inbox", entry.name)
