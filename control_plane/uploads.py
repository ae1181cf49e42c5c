"""Uploads of a request: streamed into the artifact store as they arrive, kept or discarded.

A multipart file part is written to the store's temporary area (a file in `incoming/`, or a
multipart upload to S3) and hashed on the way: no second pass and no full copy in memory. The
view keeps the parts that became a version; at the end of the request every other part is
removed, so an upload refused, too large or cut off leaves nothing behind.
"""

from __future__ import annotations

from flask import Request, g

from control_plane.artifacts import Upload
from control_plane.context import state


class UploadingRequest(Request):
    """A request whose file uploads are written to the artifact store and hashed on the way."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):  # type: ignore[no-untyped-def]
        upload = state().artifacts.open_upload()
        g.setdefault("tether_uploads", {})[id(upload)] = (upload, False)
        return upload


def keep_upload(upload: Upload) -> tuple[str, int]:
    """Move an upload into the artifact store; return its digest and size."""
    kept = state().artifacts.keep(upload)
    g.tether_uploads[id(upload)] = (upload, True)
    return kept


def discard_unkept_uploads(error: BaseException | None = None) -> None:
    """Remove every upload of this request that was not kept."""
    for upload, kept in g.pop("tether_uploads", {}).values():
        if not kept:
            state().artifacts.discard(upload)
