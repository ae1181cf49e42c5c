"""Stream a file into an upload while telling a callback how far it has got."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import BinaryIO


class CountingReader:
    """A read-only file wrapper that reports the position after every read.

    httpx's multipart body reads file parts in 64 KiB chunks, so wrapping the file (rather than
    reading it) keeps an upload of any size out of memory. `fileno` and `seek` are passed through
    so httpx can still learn the length and send a Content-Length instead of chunked encoding.
    """

    def __init__(self, file: BinaryIO, on_progress: Callable[[int], None] | None = None) -> None:
        self._file = file
        self._on_progress = on_progress
        self.largest_read = 0  # lets tests prove the file was never read whole

    @property
    def name(self) -> str:
        return str(getattr(self._file, "name", "upload"))

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes and report the new position."""
        chunk = self._file.read(size)
        self.largest_read = max(self.largest_read, len(chunk))
        if chunk and self._on_progress is not None:
            self._on_progress(self._file.tell())
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move within the file (httpx rewinds it before sending)."""
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        """Return the position in the file."""
        return self._file.tell()

    def fileno(self) -> int:
        """Return the file descriptor, so the length can be found without reading."""
        return self._file.fileno()
