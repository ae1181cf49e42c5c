"""Apply a signed bundle with no network: the same checks, cache, smoke test and swap as a poll.

    1. open it (a regular file, at most `max_bundle_bytes`) and scan the raw tar headers
       before tarfile does (agent.airgap.bundle_tar): only regular members and bounded metadata,
       every size inside the file, a bounded number of members;
    2. read `manifest.json` (the first member) and verify it exactly as a pulled manifest
       (`Reconciler.verify_manifest`: signature, trusted key, environment, revision, expiry);
    3. check every other member against that manifest before reading a byte of it: a regular
       file named `sha256/<digest>` for a digest the manifest names, of exactly the declared
       size; `..`, absolute paths, links, devices, unnamed digests and wrong sizes refuse the
       whole bundle;
    4. stream each member through the cache's verified download path (never
       `tarfile.extractall`), so a file lands in `artifacts/sha256/` only once its digest
       matched; a member the cache already holds is hashed all the same (and not stored), so
       a damaged or tampered medium is refused, not believed sound; a mismatch refuses the
       bundle and drops what this import cached;
    5. accept the manifest (persisted before acting, trusted keys learned), then reconcile:
       load, smoke-test and swap, fetching through a bundle-backed opener instead of HTTP.

`import_bundle_file` applies a bundle to a data directory no agent runs on, with a reconciler of its
own; `apply_bundle` does the same through a running agent's reconciler, so its inference server
swaps models with no gap (the agent's inbox, agent.airgap.inbox, calls it).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from agent.airgap.bundle_tar import BundleRefused, open_bundle, scan_headers
from agent.errors import AgentError
from agent.local.cache import ArtifactCache, CacheError, VerificationFailed
from agent.local.datadir import DataDirLock, DataDirLocked, artifacts_dir
from agent.local.state import Identity, StateStore
from agent.serving.slots import ModelSlots
from agent.settings import AgentSettings
from agent.sync.reconciler import ManifestRefused, Outcome, Reconciler
from common.bundles import BUNDLE_BLOB_DIR, BUNDLE_MANIFEST, MAX_MANIFEST_BYTES, manifest_files
from common.clock import utcnow
from common.digests import sha256_stream
from common.schemas import Manifest, SignedManifest

log = logging.getLogger("tether.agent.bundle")

MEMBER_NAME = re.compile(re.escape(BUNDLE_BLOB_DIR) + r"([0-9a-f]{64})")


class AgentRunning(AgentError):
    """An agent holds the data directory: hand it the bundle (agent.airgap.inbox) instead."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


@dataclass
class ImportResult:
    """What one import did."""

    manifest: Manifest
    signed_by: str
    cached: list[str] = field(default_factory=list)  # digests this import put in the cache
    reused: list[str] = field(default_factory=list)  # digests the cache already held
    checked: list[str] = field(default_factory=list)  # members whose bytes matched, all of them
    outcome: Outcome | None = None


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold the lock `tether agent run` holds, or raise AgentRunning naming its pid."""
    try:
        with DataDirLock(data_dir):
            yield
    except DataDirLocked as locked:
        raise AgentRunning(
            f"the agent (pid {locked.pid or '?'}) is running on {data_dir}", locked.pid
        ) from None


def import_bundle_file(
    path: Path, settings: AgentSettings, *, identity: Identity | None = None
) -> ImportResult:
    """Verify the bundle at `path` and apply it to the agent in `settings.data_dir`.

    Raise AgentRunning if an agent runs on that data directory: it must apply the bundle itself.
    """
    data_dir = settings.data_dir
    store = StateStore(data_dir)
    found = identity or store.load_identity()
    if found is None:
        raise BundleRefused(f"no agent identity in {data_dir}: enroll it first")
    cache = ArtifactCache(
        artifacts_dir(data_dir),
        reserve_bytes=settings.free_disk_reserve_bytes,
        chunk_bytes=settings.download_chunk_bytes,
    )
    with data_dir_lock(data_dir):
        cache.prepare()
        reconciler = Reconciler(
            state=store,
            cache=cache,
            slots=ModelSlots(),
            opener=_no_opener,
            environment=found.environment,
            keep_versions=settings.keep_versions,
            clock_skew=settings.clock_skew,
        )
        return apply_bundle(
            Path(path), reconciler, restore=True, max_bytes=settings.max_bundle_bytes
        )


def apply_bundle(
    path: Path, reconciler: Reconciler, *, restore: bool = False, max_bytes: int | None = None
) -> ImportResult:
    """Verify the bundle at `path` and apply it through `reconciler` (its slots, its cache).

    `restore` first loads what serves now into the reconciler's slots, for a reconciler of its
    own; a running agent's slots already hold it. A bundle over `max_bytes` is refused. A
    refusal is recorded in the state and raised as BundleRefused. Artifacts come from the
    bundle's members only: the reconciler is handed the bundle's opener for this one pass.
    """
    store = reconciler.state
    try:
        with reconciler.lock:
            return _import(path, reconciler, restore, max_bytes)
    except (BundleRefused, ManifestRefused) as error:
        with store.edit(durable=False) as state:
            state.last_error = f"bundle {path.name} refused: {error}"[:2000]
            state.last_error_at = utcnow()
        if isinstance(error, ManifestRefused):
            raise BundleRefused(str(error)) from None
        raise


def _import(
    path: Path, reconciler: Reconciler, restore: bool, max_bytes: int | None
) -> ImportResult:
    store, cache = reconciler.state, reconciler.cache
    with open_bundle(path, max_bytes) as handle:
        scan_headers(handle)
        handle.seek(0)
        try:
            archive = tarfile.open(fileobj=handle, mode="r:")  # noqa: SIM115 - with below
        except tarfile.TarError as error:
            raise BundleRefused(f"{path} is not an uncompressed tar file: {error}") from None
        with archive, _tar_errors_refuse(path):
            signed = read_manifest(archive)
            try:
                manifest = reconciler.verify_manifest(signed)
            except ManifestRefused as error:
                reconciler.record_refusal(error)
                raise
            signed_by = reconciler.trust.verify(signed.signed_document(), signed.signatures)
            members = check_members(archive, manifest, cache)
            result = ImportResult(manifest=manifest, signed_by=signed_by)
            stage(archive, members, cache, result)
            if restore:
                # What serves now, so models in place are kept and a failure leaves them serving.
                reconciler.restore()
            reconciler.accept(signed, None)
            reconciler.retry_now()  # an operator brought this bundle: try every model now
            outcome = result.outcome = reconciler.reconcile(
                manifest, opener=bundle_opener(archive, members, manifest)
            )
    with store.edit() as state:
        if outcome.converged:
            state.last_error = state.last_error_at = None
        else:
            state.last_error = "; ".join(f"{k}: {v}" for k, v in outcome.failed.items())[:2000]
            state.last_error_at = utcnow()
    log.info(
        "bundle revision %d of %s applied: %d artifact(s) cached, %d reused",
        manifest.revision,
        manifest.environment,
        len(result.cached),
        len(result.reused),
    )
    return result


@contextlib.contextmanager
def _tar_errors_refuse(path: Path) -> Iterator[None]:
    """Refuse the bundle when tarfile fails mid-archive (a bad header after a pax header)."""
    try:
        yield
    except tarfile.TarError as error:
        raise BundleRefused(f"{path.name} is not a valid tar file: {error}") from None


def _no_opener(name: str, version: int, offset: int):  # type: ignore[no-untyped-def]
    raise CacheError(f"{name} v{version} is not in the bundle")


def read_manifest(archive: tarfile.TarFile) -> SignedManifest:
    """Return the signed manifest, which must be the bundle's first member."""
    first = archive.next()
    if first is None or first.name != BUNDLE_MANIFEST:
        raise BundleRefused(f"the first member is not {BUNDLE_MANIFEST}: not a tether bundle")
    if not first.isreg() or first.issparse():
        raise BundleRefused(f"{BUNDLE_MANIFEST} is not a regular file")
    if first.size > MAX_MANIFEST_BYTES:
        raise BundleRefused(
            f"{BUNDLE_MANIFEST} is {first.size} bytes (at most {MAX_MANIFEST_BYTES})"
        )
    reader = archive.extractfile(first)
    assert reader is not None
    try:
        return SignedManifest.model_validate_json(reader.read(first.size))
    except ValidationError as error:
        raise BundleRefused(
            f"{BUNDLE_MANIFEST} is not a signed manifest ({error.error_count()} problem(s))"
        ) from None


def check_members(
    archive: tarfile.TarFile, manifest: Manifest, cache: ArtifactCache
) -> dict[str, tarfile.TarInfo]:
    """Return the member of each named digest, refusing the bundle at the first bad one."""
    named = manifest_files(manifest)
    members: dict[str, tarfile.TarInfo] = {}
    while (member := archive.next()) is not None:
        name = member.name
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise BundleRefused(f"member {name!r} has an absolute path")
        if ".." in re.split(r"[/\\]", name):
            raise BundleRefused(f"member {name!r} climbs out of the bundle (..)")
        if member.issym() or member.islnk():
            raise BundleRefused(f"member {name!r} is a link (to {member.linkname!r})")
        if not member.isreg() or member.issparse():
            raise BundleRefused(f"member {name!r} is not a regular file")
        match = MEMBER_NAME.fullmatch(name)
        if match is None:
            raise BundleRefused(f"member {name!r} is not named {BUNDLE_BLOB_DIR}<sha256>")
        digest = match.group(1)
        if digest not in named:
            raise BundleRefused(f"member {name!r} is not named by the manifest")
        if digest in members:
            raise BundleRefused(f"member {name!r} appears twice")
        if member.size != named[digest]:
            larger = "larger" if member.size > named[digest] else "smaller"
            raise BundleRefused(
                f"member {name!r} is {member.size} bytes, {larger} than the "
                f"{named[digest]} the manifest declares"
            )
        members[digest] = member
    missing = [d for d, size in named.items() if d not in members and not cache.has(d, size)]
    if missing:
        raise BundleRefused(
            f"the bundle lacks {len(missing)} file(s) the manifest names and the cache does "
            f"not hold: {', '.join(d[:12] for d in sorted(missing))}"
        )
    return members


class MemberStream:
    """A tar member's data as the cache reads a download (agent.local.cache.Stream)."""

    def __init__(self, reader: IO[bytes], offset: int) -> None:
        reader.seek(offset)
        self._reader = reader
        self._offset = offset

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def readinto(self) -> Callable[[memoryview], int] | None:
        return self._reader.readinto  # type: ignore[attr-defined]

    def chunks(self) -> Iterator[bytes]:
        return iter(lambda: self._reader.read(1024 * 1024), b"")


def member_opener(
    archive: tarfile.TarFile, member: tarfile.TarInfo
) -> Callable[[int], contextlib.AbstractContextManager[MemberStream]]:
    """Return an agent.local.cache.Opener reading `member` from a byte offset."""

    @contextlib.contextmanager
    def open_at(offset: int) -> Iterator[MemberStream]:
        reader = archive.extractfile(member)
        assert reader is not None  # check_members let regular files only through
        with reader:
            yield MemberStream(reader, offset)

    return open_at


def stage(
    archive: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    cache: ArtifactCache,
    result: ImportResult,
) -> None:
    """Put every member into the cache, verified; on any mismatch undo this import's files.

    A member the cache already holds is hashed too, though its bytes are not needed: a bundle
    with a bad member is refused whether or not this agent needed that member.
    """
    try:
        for digest, member in sorted(members.items()):
            if cache.has(digest, member.size):
                verify_member(archive, member, digest)
                result.reused.append(digest)
            else:
                result.cached.append(digest)
            cache.get(digest, member.size, member_opener(archive, member))
            result.checked.append(digest)
    except CacheError as error:
        for digest in result.cached:
            cache.path(digest).unlink(missing_ok=True)
            cache.part_path(digest).unlink(missing_ok=True)
        raise BundleRefused(f"{error}; nothing applied") from None


def verify_member(archive: tarfile.TarFile, member: tarfile.TarInfo, digest: str) -> None:
    """Hash a member as it streams by, storing nothing; raise VerificationFailed on a mismatch."""
    reader = archive.extractfile(member)
    assert reader is not None  # check_members let regular files only through
    with reader:
        actual = sha256_stream(reader)
    if not hmac.compare_digest(actual, digest):
        raise VerificationFailed(
            f"member {member.name!r} has sha256 {actual[:12]}, expected {digest[:12]}: the "
            "bundle is damaged or tampered with (the cache's own copy is sound)"
        )


def bundle_opener(
    archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo], manifest: Manifest
) -> Callable[[str, int, int], contextlib.AbstractContextManager[MemberStream]]:
    """Return the reconciler's opener (model, version, offset) backed by the bundle."""
    digests: dict[tuple[str, int], str] = {}
    for name, model in manifest.models.items():
        for entry in (model.primary, model.shadow):
            if entry is not None:
                digests[(name, entry.version)] = entry.artifact.sha256

    def open_artifact(name: str, version: int, offset: int):  # type: ignore[no-untyped-def]
        digest = digests.get((name, version))
        if digest is None or digest not in members:
            raise CacheError(f"{name} v{version} is not in the bundle")
        return member_opener(archive, members[digest])(offset)

    return open_artifact
