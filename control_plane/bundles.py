"""Stream a bundle tar with an exact Content-Length, without building it in memory or on disk."""

from __future__ import annotations

import tarfile
import time
from collections.abc import Callable, Iterator
from typing import IO

from common.bundles import BUNDLE_BLOB_DIR, BUNDLE_MANIFEST, manifest_files
from common.schemas import SignedManifest

BLOCK = tarfile.BLOCKSIZE
CHUNK = 1024 * 1024


def stream_bundle(
    signed: SignedManifest, open_blob: Callable[[str], IO[bytes]]
) -> tuple[int, Iterator[bytes]]:
    """Return the tar's exact length and an iterator of its bytes; `open_blob(digest)` reads one."""
    manifest = signed.model_dump_json().encode()
    members: list[tuple[str, int, str | bytes]] = [(BUNDLE_MANIFEST, len(manifest), manifest)]
    members += [
        (f"{BUNDLE_BLOB_DIR}{digest}", size, digest)
        for digest, size in sorted(manifest_files(signed.manifest).items())
    ]
    length = sum(BLOCK + _padded(size) for _, size, _ in members) + 2 * BLOCK
    # tarfile pads the end to a multiple of RECORDSIZE; so do we, to keep the length exact.
    length = -(-length // tarfile.RECORDSIZE) * tarfile.RECORDSIZE

    def generate() -> Iterator[bytes]:
        written = 0
        now = int(time.time())
        for name, size, source in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = size, now, 0o644
            header = info.tobuf(format=tarfile.PAX_FORMAT)
            yield header
            written += len(header)
            if isinstance(source, bytes):
                yield source
            else:
                with open_blob(source) as handle:
                    sent = 0
                    while sent < size:
                        chunk = handle.read(min(CHUNK, size - sent))
                        if not chunk:
                            raise OSError(f"{source} is shorter than its recorded size")
                        sent += len(chunk)
                        yield chunk
            padding = _padded(size) - size
            yield b"\0" * padding
            written += _padded(size)
        yield b"\0" * (length - written)

    return length, generate()


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
