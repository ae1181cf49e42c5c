"""Artifact files, content-addressed under `artifacts/sha256/<digest>`.

Uploads are hashed while werkzeug's multipart parser writes them, so a file is read once, never
held in memory, and only renamed into place once it is complete and accepted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

from common.digests import HashingWriter


class ArtifactFiles:
    """Store and find artifact files by digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.by_digest = root / "sha256"

    def prepare(self) -> None:
        self.by_digest.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        # Whatever is in incoming/ was cut off by a crash: it never became a version.
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)

    def sweep(self, referenced: set[str]) -> list[str]:
        """Delete stored files no version references; return their digests.

        An upload is renamed into place just before its version row commits: a crash between
        the two leaves a file that no version will ever point at. Run at start only, when no
        upload is in flight.
        """
        removed = []
        for path in self.by_digest.iterdir():
            if path.name not in referenced:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def path(self, sha256: str) -> Path:
        return self.by_digest / sha256

    def open_incoming(self) -> HashingWriter:
        """Open a temp file in incoming/ that hashes what is written to it."""
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by keep() or discard()
            dir=self.incoming, prefix="upload-", delete=False
        )
        return HashingWriter(handle)

    def keep(self, upload: HashingWriter) -> tuple[str, int]:
        """Move a finished upload into place; return its digest and size."""
        upload.flush()
        os.fsync(upload.fileno())
        upload.close()
        digest = upload.hexdigest()
        target = self.path(digest)
        if target.exists():  # same bytes already stored for another version
            Path(upload.name).unlink(missing_ok=True)
        else:
            os.replace(upload.name, target)
        return digest, upload.size

    @staticmethod
    def discard(upload: IO[bytes] | HashingWriter) -> None:
        """Close and delete an upload that will not become a version."""
        try:
            upload.close()
        finally:
            Path(upload.name).unlink(missing_ok=True)
