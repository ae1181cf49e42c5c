"""Answer a download of a stored blob (artifact or reference profile) from whichever store holds it.

- a directory: the file, sent by the WSGI server's sendfile, with Range and If-None-Match;
- S3 with presigning on: `307 Temporary Redirect` to a short-lived presigned URL, so the bytes
  never pass through the control plane (the caller was authorised before this is reached);
- S3 with presigning off: the object streamed through, a Range read with a ranged GET.

Whatever the path, the ETag is the digest and the agent checks the bytes against the signed
manifest, so a store or mirror that serves other bytes is refused, not trusted.
"""

from __future__ import annotations

import io

from flask import Response, request, send_file

from control_plane.artifacts import ArtifactMissing
from control_plane.context import state
from control_plane.errors import NotFound

# Content-addressed: the bytes behind a digest never change.
FOREVER = 31536000


def blob_response(
    digest: str, *, mimetype: str, what: str, download_name: str | None = None
) -> Response:
    """Answer a GET of the blob `digest`; `what` names it in a 404 ("the artifact of m v1")."""
    store = state().artifacts
    path = store.file_path(digest)
    if path is not None:
        if not path.exists():
            raise NotFound(f"{what} is missing from the artifact store")
        response = send_file(
            path,
            mimetype=mimetype,
            as_attachment=download_name is not None,
            download_name=download_name,
            conditional=True,
            etag=digest,
            max_age=FOREVER,
        )
    elif request.if_none_match.contains(digest):
        response = Response(status=304)
        response.set_etag(digest)
    elif (url := store.presigned_url(digest)) is not None:
        response = Response(status=307, headers={"Location": url})
        # The URL expires: neither the client nor a proxy may reuse this answer.
        response.headers["Cache-Control"] = "no-store"
        response.set_etag(digest)
    else:
        response = _streamed(digest, mimetype=mimetype, what=what, download_name=download_name)
    response.headers["X-Tether-Sha256"] = digest
    return response


def _streamed(digest: str, *, mimetype: str, what: str, download_name: str | None) -> Response:
    try:
        handle = state().artifacts.open(digest)
    except ArtifactMissing:
        raise NotFound(f"{what} is missing from the artifact store") from None
    size = handle.seek(0, io.SEEK_END)
    handle.seek(0)
    response = send_file(
        handle,
        mimetype=mimetype,
        as_attachment=download_name is not None,
        download_name=download_name,
        conditional=False,  # done below, now that the length is known
        etag=digest,
        max_age=FOREVER,
    )
    response.content_length = size
    # werkzeug seeks the handle to a Range's first byte: the store then reads from there on.
    response.make_conditional(request, accept_ranges=True, complete_length=size)
    return response
