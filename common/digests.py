"""Compute and check sha256 digests of files and streams."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import IO

CHUNK_SIZE = 1024 * 1024


class DigestMismatch(ValueError):
    """Bytes on hand do not match the digest or size they should have."""


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 of a file, reading it in chunks."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def sha256_stream(stream: IO[bytes]) -> str:
    """Return the hex sha256 of everything left in a binary stream."""
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK_SIZE):
        digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: str | Path, *, sha256: str, size: int) -> None:
    """Raise DigestMismatch unless the file has exactly this size and digest."""
    actual_size = Path(path).stat().st_size
    if actual_size != size:
        raise DigestMismatch(f"{path}: size {actual_size} bytes, expected {size}")
    actual = sha256_file(path)
    if not hmac.compare_digest(actual, sha256):
        raise DigestMismatch(f"{path}: sha256 {actual}, expected {sha256}")


class HashingWriter:
    """Write to a file while hashing, so a stream is stored and digested in one pass."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self.size += len(data)
        return self._handle.write(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def __getattr__(self, name: str):  # seek, tell, flush, close, name... of the file
        return getattr(self._handle, name)
