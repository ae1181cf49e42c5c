"""The content-addressed artifact cache and its resumable, verified downloader.

    DATA_DIR/artifacts/sha256/<digest>         verified artifacts, named by their sha256
    DATA_DIR/artifacts/partial/<digest>.part   a download in progress (or cut off)

A file gets into `sha256/` only by an atomic rename after its size and digest matched. A file
not verified by this process (left by an earlier run), or changed on disk since (its inode, size,
mtime or ctime moved: any write moves the ctime), is hashed again before it is handed out, so the
bytes loaded always match the manifest. That is also why the artifact's data is not fsynced
before the rename: after a crash, a file the kernel had not yet written back fails that check and
is downloaded again, and the fsync would cost about a third of the download's time. The download
path is the agent's hottest loop, and where its time goes was measured (docs/benchmarks.md):

- where the stream can (`agent.sync.transports`), the body is read straight from the socket into a
  ring of `QUEUE_DEPTH + 2` reused buffers of `chunk_bytes`: the kernel's copy is the only one,
  and no page is allocated per read; otherwise chunks are taken as they arrive (`iter_raw`)
  and gathered into batches written with one `os.writev` each;
- the sha256 runs on its own thread fed through a bounded queue: hashlib releases the GIL for
  large buffers, so hashing overlaps receiving and writing, and the queue bounds memory to
  about `(QUEUE_DEPTH + 2) * chunk_bytes`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from agent.errors import AgentError
from common.digests import DigestMismatch
from common.files import fsync_directory

log = logging.getLogger("tether.agent.cache")

QUEUE_DEPTH = 8
# os.writev takes at most IOV_MAX (1024 on Linux) buffers per call.
MAX_BUFFERS = 512


class CacheError(AgentError):
    """An artifact could not be put in the cache."""


class InsufficientDisk(CacheError):
    """The download would leave less free disk than the configured reserve."""


class DownloadIncomplete(CacheError):
    """The transfer ended before the declared size; the part file is kept to resume."""


class DownloadCancelled(CacheError):
    """The agent is stopping; the part file is kept to resume."""


class VerificationFailed(CacheError, DigestMismatch):
    """The bytes received do not have the declared size or digest; nothing was kept."""


class Stream(Protocol):
    """A response body being read, starting at byte `offset` of the artifact.

    `readinto` is None, or a function that fills a buffer from the body and returns the count
    (0 at the end): the faster path, used when the stream offers it.
    """

    @property
    def offset(self) -> int: ...

    @property
    def readinto(self) -> Callable[[memoryview], int] | None: ...

    def chunks(self) -> Iterator[bytes]: ...


# Given a byte offset, open the artifact's body from there (the server may restart at 0).
Opener = Callable[[int], AbstractContextManager[Stream]]


class ArtifactCache:
    """Hold verified artifacts by digest; fetch missing ones from an Opener."""

    def __init__(
        self,
        root: Path,
        *,
        reserve_bytes: int = 512 * 1024 * 1024,
        chunk_bytes: int = 1024 * 1024,
    ) -> None:
        self.root = Path(root)
        self.by_digest = self.root / "sha256"
        self.partial = self.root / "partial"
        self.reserve_bytes = reserve_bytes
        self.chunk_bytes = chunk_bytes
        # Digest -> the file's stat signature when this process hashed it.
        self._verified: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def prepare(self) -> None:
        self.by_digest.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.by_digest / digest

    def part_path(self, digest: str) -> Path:
        return self.partial / f"{digest}.part"

    def has(self, digest: str, size: int) -> bool:
        """Tell whether a file of this digest and size is in the cache (checked by stat only)."""
        try:
            return self.path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    def get(
        self, digest: str, size: int, opener: Opener, *, cancel: threading.Event | None = None
    ) -> Path:
        """Return a verified file for `digest`: checked this run, re-hashed, or downloaded."""
        if self.has(digest, size):
            with self._lock:
                signature = self._verified.get(digest)
            if signature is not None and signature == _signature(self.path(digest)):
                return self.path(digest)
            try:
                return self.verify(digest, size)
            except VerificationFailed as error:
                log.warning("%s; downloading it again", error)
        return self.download(digest, size, opener, cancel=cancel)

    def verify(self, digest: str, size: int) -> Path:
        """Hash a cached file again; remove it and raise VerificationFailed if it changed."""
        path = self.path(digest)
        if not self.has(digest, size):
            path.unlink(missing_ok=True)
            raise VerificationFailed(f"artifact {digest[:12]} is missing or not {size} bytes")
        hasher = _Hasher()
        total = 0
        with open(path, "rb") as handle:
            while block := handle.read(self.chunk_bytes):
                total += len(block)
                hasher.feed([block])
        actual = hasher.finish()
        if total != size or not hmac.compare_digest(actual, digest):
            path.unlink(missing_ok=True)
            raise VerificationFailed(
                f"cached artifact {digest[:12]} changed on disk (size {total}, expected {size}; "
                f"sha256 {actual[:12]}); removed it"
            )
        self._remember(digest, path)
        return path

    def download(
        self, digest: str, size: int, opener: Opener, *, cancel: threading.Event | None = None
    ) -> Path:
        """Download (or resume) `digest` into the cache, verify it and return its path.

        Raises InsufficientDisk, DownloadIncomplete, DownloadCancelled (part kept),
        VerificationFailed (part deleted), or whatever the opener raises (part kept).
        """
        self.prepare()
        part = self.part_path(digest)
        offset = part.stat().st_size if part.exists() else 0
        if offset > size:
            log.warning("part file of %s is larger than the artifact; starting over", digest[:12])
            part.unlink()
            offset = 0
        self._check_disk(size - offset, digest)
        hasher = _Hasher()
        try:
            if offset:
                self._hash_prefix(part, offset, hasher)
            if offset < size:
                offset = self._receive(part, offset, size, opener, hasher, cancel)
            actual = hasher.finish()
        finally:
            hasher.close()
        if offset != size or not hmac.compare_digest(actual, digest):
            part.unlink(missing_ok=True)
            raise VerificationFailed(
                f"artifact {digest[:12]}: received {offset} bytes with sha256 {actual[:12]}, "
                f"expected {size} bytes with sha256 {digest[:12]}; discarded"
            )
        os.replace(part, self.path(digest))
        fsync_directory(self.by_digest)
        self._remember(digest, self.path(digest))
        log.info("artifact %s verified and cached (%d bytes)", digest[:12], size)
        return self.path(digest)

    def _remember(self, digest: str, path: Path) -> None:
        signature = _signature(path)
        with self._lock:
            if signature is not None:
                self._verified[digest] = signature

    def _check_disk(self, needed: int, digest: str) -> None:
        free = shutil.disk_usage(self.root).free
        if free - needed < self.reserve_bytes:
            raise InsufficientDisk(
                f"artifact {digest[:12]} needs {needed} more bytes but only {free} are free and "
                f"{self.reserve_bytes} must stay free (free_disk_reserve_bytes)"
            )

    def _hash_prefix(self, part: Path, offset: int, hasher: _Hasher) -> None:
        """Hash the bytes already in a part file, so the resumed download verifies end to end."""
        with open(part, "rb") as handle:
            remaining = offset
            while remaining > 0:
                block = handle.read(min(self.chunk_bytes, remaining))
                if not block:
                    break
                hasher.feed([block])
                remaining -= len(block)
        log.info("resuming artifact %s at byte %d", part.stem[:12], offset)

    def _receive(
        self,
        part: Path,
        offset: int,
        size: int,
        opener: Opener,
        hasher: _Hasher,
        cancel: threading.Event | None,
    ) -> int:
        """Append the body from `offset` to the part file; return the new size of the file."""
        with opener(offset) as stream:
            if stream.offset != offset:
                if stream.offset != 0:
                    raise DownloadIncomplete(
                        f"asked for byte {offset}, the server started at {stream.offset}"
                    )
                # The server ignored Range: start over with what it sends.
                log.info("server ignored Range; downloading %s from the start", part.stem[:12])
                hasher.reset()
                offset = 0
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, offset)
                os.lseek(fd, offset, os.SEEK_SET)
                reader = stream.readinto
                if reader is not None:
                    offset = self._fill(fd, reader, offset, size, hasher, cancel)
                else:
                    offset = self._copy(fd, stream.chunks(), offset, size, hasher, cancel)
            finally:
                os.close(fd)
        if offset < size:
            raise DownloadIncomplete(
                f"artifact {part.stem[:12]}: the transfer ended at byte {offset} of {size}"
            )
        return offset

    def _fill(
        self,
        fd: int,
        reader: Callable[[memoryview], int],
        offset: int,
        size: int,
        hasher: _Hasher,
        cancel: threading.Event | None,
    ) -> int:
        # A buffer is refilled only QUEUE_DEPTH + 2 reads later: by then the hasher, at most
        # QUEUE_DEPTH queued buffers plus the one it holds behind, is done with it.
        ring = [memoryview(bytearray(self.chunk_bytes)) for _ in range(QUEUE_DEPTH + 2)]
        turn = 0
        while offset < size:
            buffer = ring[turn % len(ring)]
            turn += 1
            # Never ask for a byte past the declared size, whatever the server would send.
            wanted = min(self.chunk_bytes, size - offset)
            filled = 0
            try:
                while filled < wanted:
                    count = reader(buffer[filled:wanted])
                    if not count:
                        break
                    filled += count
            finally:
                # Whatever arrived is valid prefix: keep it so a resume starts right after it.
                if filled:
                    view = buffer[:filled]
                    _write_all(fd, [view], filled)
                    hasher.feed([view])
                    offset += filled
            if filled < wanted:
                break  # the body ended early
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("the agent is stopping")
        return offset

    def _copy(
        self,
        fd: int,
        chunks: Iterable[bytes],
        offset: int,
        size: int,
        hasher: _Hasher,
        cancel: threading.Event | None,
    ) -> int:
        batch: list[bytes | memoryview] = []
        batched = 0
        try:
            for chunk in chunks:
                room = size - offset - batched
                if len(chunk) >= room:
                    # Never take a byte past the declared size, whatever the server sends.
                    if room:
                        batch.append(memoryview(chunk)[:room])
                        batched += room
                    break
                batch.append(chunk)
                batched += len(chunk)
                if batched >= self.chunk_bytes or len(batch) >= MAX_BUFFERS:
                    full, count = batch, batched
                    batch, batched = [], 0
                    _write_all(fd, full, count)
                    hasher.feed(full)
                    offset += count
                    if cancel is not None and cancel.is_set():
                        raise DownloadCancelled("the agent is stopping")
        finally:
            # Whatever arrived is valid prefix: keep it so a resume starts right after it.
            if batch:
                _write_all(fd, batch, batched)
                hasher.feed(batch)
                offset += batched
        return offset

    def prune(self, keep: set[str]) -> list[str]:
        """Delete cached and partial files whose digest is not in `keep`; return the digests."""
        removed = []
        for folder, suffix in ((self.by_digest, ""), (self.partial, ".part")):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                digest = path.name.removesuffix(suffix) if suffix else path.name
                if digest not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    with self._lock:
                        self._verified.pop(digest, None)
                    removed.append(digest)
        if removed:
            log.info("cache: removed %d file(s) no longer kept", len(removed))
        return removed


def _signature(path: Path) -> tuple[int, ...] | None:
    """Return what changes when a file is written or replaced, or None if it is gone."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _write_all(fd: int, buffers: list[bytes | memoryview], total: int) -> None:
    written = os.writev(fd, buffers)
    if written == total:
        return
    # A short write (a signal, a full disk): finish the rest buffer by buffer.
    view = memoryview(b"".join(buffers))[written:]
    while view:
        view = view[os.write(fd, view) :]


class _Hasher:
    """A sha256 computed on a background thread from batches handed over a bounded queue."""

    def __init__(self, depth: int = QUEUE_DEPTH) -> None:
        self._queue: queue.Queue[object] = queue.Queue(depth)
        self._digest = hashlib.sha256()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()
        self._closed = False

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if batch is _RESET:
                self._digest = hashlib.sha256()
                continue
            try:
                for buffer in batch:  # type: ignore[attr-defined]
                    self._digest.update(buffer)
            except BaseException as error:  # surfaced by finish(); keep draining the queue
                self._error = error

    def feed(self, batch: list[bytes | memoryview]) -> None:
        """Queue buffers to hash; blocks while the queue is full, which bounds memory."""
        self._queue.put(batch)

    def reset(self) -> None:
        """Start the digest over (the server ignored Range)."""
        self._queue.put(_RESET)

    def finish(self) -> str:
        """Wait for every queued buffer and return the hex digest."""
        self.close()
        if self._error is not None:
            raise CacheError(f"hashing failed: {self._error}") from self._error
        return self._digest.hexdigest()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()


_RESET = object()
