"""Artifacts in a directory: `sha256/<digest>` files, uploads arriving in `incoming/`.

Uploads are hashed while werkzeug's multipart parser writes them, so a file is read once, never
held in memory, and only renamed into place once it is complete and accepted. The directory may
be a mount several replicas share: a rename is atomic on one filesystem, and `incoming/` is on
the same one.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import IO

from common.digests import HashingWriter
from control_plane.artifacts.store import (
    ArtifactMissing,
    ArtifactStore,
    ArtifactStoreError,
    Upload,
)


class FileUpload(HashingWriter):
    """A temp file in `incoming/` that hashes what is written to it."""

    def read_back(self, limit: int) -> bytes:
        self.flush()
        with open(self.name, "rb") as handle:
            return handle.read(limit)


class DirectoryStore(ArtifactStore):
    """Store and find artifact files by digest under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.by_digest = root / "sha256"

    @property
    def description(self) -> str:
        return str(self.root)

    def prepare(self) -> None:
        try:
            self.by_digest.mkdir(parents=True, exist_ok=True)
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ArtifactStoreError(
                f"artifact store {self.root}: cannot create its folders: {error}"
            ) from None

    def check(self) -> str:
        return "ok" if self.by_digest.is_dir() and self.incoming.is_dir() else "missing"

    def file_path(self, digest: str) -> Path:
        return self.by_digest / digest

    def open_upload(self) -> FileUpload:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by keep() or discard()
            dir=self.incoming, prefix="upload-", delete=False
        )
        return FileUpload(handle)

    def keep(self, upload: Upload) -> tuple[str, int]:
        assert isinstance(upload, FileUpload)
        upload.flush()
        os.fsync(upload.fileno())
        upload.close()
        digest = upload.hexdigest()
        target = self.file_path(digest)
        if target.exists():  # same bytes already stored for another version
            Path(upload.name).unlink(missing_ok=True)
        else:
            os.replace(upload.name, target)
        return digest, upload.size

    def discard(self, upload: Upload | IO[bytes]) -> None:
        try:
            upload.close()  # type: ignore[union-attr]  # HashingWriter passes close() through
        finally:
            Path(upload.name).unlink(missing_ok=True)

    def exists(self, digest: str) -> bool:
        return self.file_path(digest).is_file()

    def open(self, digest: str) -> IO[bytes]:
        try:
            return open(self.file_path(digest), "rb")  # the caller closes it
        except FileNotFoundError:
            raise ArtifactMissing(digest) from None

    def delete(self, digest: str) -> None:
        self.file_path(digest).unlink(missing_ok=True)

    def sweep_uploads(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for leftover in self.incoming.iterdir():
            try:
                if older_than <= 0 or leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:  # another replica swept it first
                pass
        return removed

    def sweep(self, referenced: set[str]) -> list[str]:
        removed = []
        for path in self.by_digest.iterdir():
            if path.name not in referenced:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed
