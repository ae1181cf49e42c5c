"""The fleet's hot path, answered beneath Flask: a manifest poll, unchanged or already built.

Every agent polls its manifest every few seconds, and nearly every poll names the revision it
already has. For that answer, an empty 304, Flask's machinery (request context, URL matching,
hooks, a response object) costs more than the work itself: measured in-process, about 200 us
against 90 us for a bare Flask view. This WSGI layer answers exactly that case with the checks
of the view (`control_plane.api.agents.manifest`): the agent's own token, valid now; its
environment's revision; the signing keys. It sends the same headers and counts the request in
the same metric.

When the revision moved, and this process already holds the signed manifest of the new one
(control_plane/manifest_cache.py: the view built it for the first agent that asked), the
manifest is sent from here too, so a rollout's thousand fetches cost about what a 304 does.

Anything else goes to Flask untouched: another path or method, a long-poll (a query string), an
If-None-Match the view's full parsing is needed for, a token that is not this agent's, a
manifest not built yet. The view then gives the full answer or the error, so refusals keep one
shape and one place.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.http import quote_etag

from common.schemas import POLL_HINT_HEADER, Role
from control_plane.manifests import manifest_etag, poll_hint

MANIFEST_PATH = re.compile(r"/api/v1/agents/([^/]+)/manifest")
# The Flask endpoint of the view this stands in for: the metric's label must be the same.
MANIFEST_ENDPOINT = "agents.manifest"
SINGLE_ETAG = re.compile(r'"[^"]*"')
STATUS_LINES = {200: "200 OK", 304: "304 NOT MODIFIED"}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class UnchangedManifestShortcut:
    """WSGI middleware answering 304 to an agent whose manifest has not changed."""

    def __init__(self, app: WSGIApp, tether: Any, metrics: Any) -> None:
        self.app = app
        self.tether = tether  # control_plane.app.TetherState
        self.observe = metrics.requests.observe

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if environ["REQUEST_METHOD"] == "GET" and not environ.get("QUERY_STRING"):
            match = MANIFEST_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None:
                started = time.perf_counter()
                answer = self._answer(environ, match[1])
                if answer is not None:
                    status, headers, body = answer
                    start_response(STATUS_LINES[status], headers)
                    self.observe(MANIFEST_ENDPOINT, "GET", status, time.perf_counter() - started)
                    return body
        return self.app(environ, start_response)

    def _answer(
        self, environ: dict[str, Any], agent_id: str
    ) -> tuple[int, list[tuple[str, str]], list[bytes]] | None:
        """Return the status, headers and body of a poll this layer can answer, else None."""
        asked = environ.get("HTTP_IF_NONE_MATCH")
        # A single quoted tag, as agents send: a list, `*` or a weak tag goes to the view.
        if asked is not None and not SINGLE_ETAG.fullmatch(asked):
            return None
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            # The token and its environment's revision in one statement: one database round trip.
            checked = self.tether.thread_store().tokens.authenticate_polling(token.strip())
        except self.tether.database.errors:
            return None  # the view meets the same error and answers it in the API's shape
        if checked is None:
            return None
        principal, found = checked
        if principal.role is not Role.agent or principal.agent_id != agent_id:
            return None
        if principal.environment is None or found is None:
            return None
        keys_tag = self.tether.keys.current().tag
        etag = quote_etag(manifest_etag(found.revision, keys_tag))
        hint = poll_hint(self.tether.settings, found.updated_at, found.lagging)
        headers = [("ETag", etag), (POLL_HINT_HEADER, str(hint))]
        if asked == etag:
            return 304, headers, []
        # Changed: the full manifest, if this process has already built it for this revision
        # (the view builds it, once, for the first agent to ask).
        cached = self.tether.manifests.peek(
            principal.environment, found.revision, keys_tag, found.manifest_ttl
        )
        if cached is None:
            return None
        body = cached.body(hint)
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        return 200, headers, [body]
