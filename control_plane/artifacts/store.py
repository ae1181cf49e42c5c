"""What every artifact store does: take uploads while hashing them, hand out artifacts by digest.

Artifacts are content-addressed (`sha256/<digest>` under the store's root); an upload is written
to a temporary name while it arrives and moved to its digest only when it is kept. Errors:

    ArtifactStoreError            the store cannot be used as configured (answered 503)
     └── ArtifactStoreUnavailable the store did not answer, or refused us (network, credentials)
    ArtifactMissing               no artifact with that digest is stored (a KeyError)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Protocol


class ArtifactStoreError(Exception):
    """The artifact store cannot be used as configured."""


class ArtifactStoreUnavailable(ArtifactStoreError):
    """The artifact store did not answer or refused a request."""


class ArtifactMissing(KeyError):
    """No artifact with this digest is in the store."""


class Upload(Protocol):
    """A file part being written to the store, hashed on the way.

    werkzeug's multipart parser writes to it, then rewinds it with `seek(0)` when the part ends.
    """

    name: str
    size: int

    def write(self, data: bytes) -> int: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...

    def hexdigest(self) -> str: ...

    def read_back(self, limit: int) -> bytes:
        """Return the first `limit` bytes written (to check a small part before keeping it)."""
        ...


class ArtifactStore(ABC):
    """Content-addressed artifacts: a directory (`files.py`) or an S3 prefix (`s3.py`)."""

    # Temporary uploads younger than this are never swept where other processes share the
    # store: an upload may take hours over a slow link, and another replica may be receiving
    # it right now.
    SAFE_SWEEP_AGE = 24 * 3600.0

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the artifacts are, for messages."""

    @abstractmethod
    def prepare(self) -> None:
        """Check the store is usable (create what is missing); raise ArtifactStoreError if not."""

    @abstractmethod
    def check(self) -> str:
        """Return "ok", or what is wrong, for the readiness probe; never raise."""

    @abstractmethod
    def open_upload(self) -> Upload:
        """Start an upload under a temporary name."""

    @abstractmethod
    def keep(self, upload: Upload) -> tuple[str, int]:
        """Move a finished upload to its digest; return the digest and size."""

    @abstractmethod
    def discard(self, upload: Upload | IO[bytes]) -> None:
        """Drop an upload that will not become a version, leaving nothing behind."""

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """Tell whether an artifact with this digest is stored."""

    @abstractmethod
    def open(self, digest: str) -> IO[bytes]:
        """Open an artifact for reading: seekable, so a Range is read from its start byte.

        Raises ArtifactMissing.
        """

    def read_bytes(self, digest: str) -> bytes:
        """Return a (small) artifact's bytes, such as a reference profile."""
        with self.open(digest) as handle:
            return handle.read()

    def file_path(self, digest: str) -> Path | None:
        """Return the artifact's local file, where it has one (sent with the kernel's sendfile)."""
        return None

    def presigned_url(self, digest: str) -> str | None:
        """Return a short-lived URL any client can GET the artifact from, or None."""
        return None

    @abstractmethod
    def delete(self, digest: str) -> None:
        """Delete an artifact (nothing happens if it is not there)."""

    @abstractmethod
    def sweep_uploads(self, older_than: float) -> int:
        """Delete temporary uploads older than `older_than` seconds; return how many."""

    @abstractmethod
    def sweep(self, referenced: set[str]) -> list[str]:
        """Delete stored artifacts no version references; return their digests.

        Safe only when no other process can be keeping an upload: see bootstrap.
        """
