"""Talk to the control plane: enroll, poll the manifest, send heartbeats, stream artifacts.

Every failure is raised from one tree, so callers decide by kind, not by status code:

    ClientError (common.errors.TetherError)
     ├── Unreachable     no usable answer: connect/read errors, timeouts, 5xx; retry with backoff
     └── Rejected        the control plane said no (4xx); carries `.error` (ApiResponseError)

A 304 on the manifest is not an error: `fetch_manifest` returns `NotModified`.

An artifact download may be answered `307 Temporary Redirect` to a presigned URL of the
control plane's artifact store (S3). That redirect is followed here, by hand, by a second client
that holds no token: httpx would drop Authorization on a cross-origin redirect too, but keeps it
on an http-to-https one to the same host, and the token must never reach a store or mirror. The
bytes from there are trusted no more than any others: the cache checks them against the digest
and size in the signed manifest. Anything wrong with the store's answer is Unreachable, so a
retry asks the control plane again and gets a fresh URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from agent.errors import AgentError
from agent.sync.transports import READINTO, BodyTransport, goes_direct
from common.errors import ApiResponseError, TetherError, error_from_response
from common.reports import Report, ReportAck, ReportBatch
from common.schemas import (
    POLL_HINT_HEADER,
    EnrollRequest,
    EnrollResponse,
    Heartbeat,
    HeartbeatAck,
    SignedManifest,
)
from common.tls import TlsFiles, describe_tls_failure, mirror_ssl_context, ssl_context

log = logging.getLogger("tether.agent.client")

USER_AGENT = "tether-agent"


class ClientError(TetherError, AgentError):
    """A request to the control plane did not succeed."""


class Unreachable(ClientError):
    """The control plane could not be reached or failed (transport error, timeout, 5xx)."""


class Rejected(ClientError):
    """The control plane refused the request (4xx)."""

    def __init__(self, error: ApiResponseError) -> None:
        super().__init__(str(error))
        self.error = error
        self.status = error.status


@dataclass(frozen=True)
class ManifestUpdate:
    """A new manifest, its ETag and the server's poll hint in seconds."""

    signed: SignedManifest
    etag: str | None
    poll_after: float | None


@dataclass(frozen=True)
class NotModified:
    """The manifest has not changed since the ETag sent; carries the poll hint."""

    etag: str | None
    poll_after: float | None


@dataclass(frozen=True)
class ArtifactStream:
    """An artifact response being read: where it starts and its raw body chunks."""

    response: httpx.Response
    offset: int
    length: int | None

    @property
    def readinto(self) -> Callable[[memoryview], int] | None:
        """Return a function filling a buffer straight from the socket, where there is one."""
        encoding = self.response.headers.get("content-encoding", "identity").lower()
        reader = self.response.extensions.get(READINTO)
        return reader if encoding in ("", "identity") and callable(reader) else None

    def chunks(self) -> Iterator[bytes]:
        """Yield the body as it arrives, without re-chunking copies."""
        if self.response.is_stream_consumed:  # a transport that already read the whole body
            return iter([self.response.content])
        encoding = self.response.headers.get("content-encoding", "identity").lower()
        if encoding in ("", "identity"):
            return self.response.iter_raw()
        return self.response.iter_bytes()  # a proxy compressed it despite Accept-Encoding


class ControlPlaneClient:
    """One agent's HTTP client for the control plane; use it as a context manager."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        agent_id: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        tls: TlsFiles | None = None,
        mirror_transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`tls` names a private CA and a client certificate; a bad file raises TlsFilesError."""
        self.url = url.rstrip("/")
        self.agent_id = agent_id
        self.timeout = timeout
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # Checked even when a transport is given, so bad files fail before anything is stored.
        self._ssl = ssl_context(tls) if tls is not None and not tls.is_default else None
        self._mirror_ssl = mirror_ssl_context(tls) if tls is not None else None
        self._http = self._new_http(headers, transport)
        # Artifact bodies take the copy-free transport, unless a proxy must carry them or a
        # transport was given (tests): then they share the API's.
        if transport is None and goes_direct(self.url):
            self._bodies = self._new_http(headers, BodyTransport(self._ssl))
        else:
            self._bodies = self._http
        # Redirected artifact downloads: no token, no base URL. A given transport (tests) carries
        # them too, unless a mirror transport is given; else one is chosen per URL (_mirror_for).
        self._mirror_transport = mirror_transport or transport
        self._mirrors: dict[bool, httpx.Client] = {}

    def _new_http(
        self, headers: dict[str, str], transport: httpx.BaseTransport | None
    ) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            transport=transport,
            verify=self._ssl or True,
            follow_redirects=False,
        )

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pools."""
        self._http.close()
        self._bodies.close()
        for mirror in self._mirrors.values():
            mirror.close()

    def _mirror_for(self, url: httpx.URL) -> httpx.Client:
        """Return the token-less client for a redirected download: copy-free unless proxied."""
        direct = self._mirror_transport is None and goes_direct(str(url))
        client = self._mirrors.get(direct)
        if client is None:
            transport = BodyTransport(self._mirror_ssl) if direct else self._mirror_transport
            client = self._mirrors[direct] = httpx.Client(
                headers={"User-Agent": USER_AGENT},
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                transport=transport,
                verify=self._mirror_ssl or True,
                follow_redirects=False,
            )
        return client

    # --- the API --------------------------------------------------------------------------

    def enroll(self, enrollment_token: str, request: EnrollRequest) -> EnrollResponse:
        """Exchange an enrollment token for this agent's id and token."""
        response = self._send(
            "POST",
            "/api/v1/agents/enroll",
            json=request.model_dump(mode="json"),
            headers={"Authorization": f"Bearer {enrollment_token}"},
        )
        return self._parse(EnrollResponse, response)

    def provision(self, environment: str, request: EnrollRequest) -> EnrollResponse:
        """Create an offline agent's identity with an admin token (air-gapped enrollment)."""
        body: dict[str, Any] = {"hostname": request.hostname, "labels": request.labels}
        body["public_key"] = request.public_key.model_dump() if request.public_key else None
        response = self._send("POST", f"/api/v1/environments/{environment}/agents", json=body)
        return self._parse(EnrollResponse, response)

    def fetch_manifest(
        self, etag: str | None = None, wait: int = 0
    ) -> ManifestUpdate | NotModified:
        """Fetch the manifest unless it still has `etag`; long-poll up to `wait` seconds."""
        headers = {"If-None-Match": _quote(etag)} if etag else {}
        params = {"wait": str(wait)} if wait > 0 else None
        # A long-poll is held open by design: give the read its wait on top of the timeout.
        timeout = httpx.Timeout(self.timeout + wait, connect=min(self.timeout, 10.0))
        response = self._send(
            "GET", self._agent_path("manifest"), headers=headers, params=params, timeout=timeout
        )
        hint = _poll_hint(response)
        new_etag = _unquote(response.headers.get("ETag"))
        if response.status_code == 304:
            return NotModified(etag=new_etag or etag, poll_after=hint)
        signed = self._parse(SignedManifest, response)
        return ManifestUpdate(
            signed=signed, etag=new_etag, poll_after=hint if hint is not None else signed.poll_after
        )

    def heartbeat(self, heartbeat: Heartbeat) -> HeartbeatAck:
        """Report the actual state of this agent."""
        response = self._send(
            "POST", self._agent_path("heartbeat"), json=heartbeat.model_dump(mode="json")
        )
        return self._parse(HeartbeatAck, response)

    def send_reports(self, reports: list[Report]) -> ReportAck:
        """Send a batch of reports; the answer says which are stored (or were already)."""
        body = ReportBatch(reports=reports).model_dump(mode="json")
        response = self._send("POST", self._agent_path("reports"), json=body)
        return self._parse(ReportAck, response)

    @contextmanager
    def download(
        self, model: str, version: int, offset: int = 0, *, part: str = "artifact"
    ) -> Iterator[ArtifactStream]:
        """Stream a version's artifact (or `part="profile"`) from byte `offset` (Range).

        The server may ignore the range and restart at 0.
        """
        path = f"/api/v1/models/{model}/versions/{version}/{part}"
        # Compression would turn raw chunks into something other than the artifact's bytes.
        headers = {"Accept-Encoding": "identity"}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
        # Between chunks only the read timeout applies, so a stalled transfer still fails.
        request = self._bodies.build_request("GET", path, headers=headers)
        response = self._open_body(self._bodies, request, f"GET {path}")
        try:
            if response.is_redirect:
                response.close()
                location = self._redirect_target(response, path)
                request = self._mirror_for(location).build_request("GET", location, headers=headers)
                where = f"GET {path} via the artifact store at {location.host}"
                response = self._open_body(self._mirror_for(location), request, where)
                if response.status_code >= 400 or response.is_redirect:
                    # The store's error is its own XML, and a fresh URL may well work: retry.
                    response.read()
                    raise Unreachable(f"{where}: the store answered {response.status_code}")
            elif response.status_code >= 400:
                response.read()
                self._raise_for(response)
            if response.status_code not in (200, 206):
                raise Unreachable(f"GET {path}: unexpected status {response.status_code}")
            start = 0
            if response.status_code == 206:
                start = _range_start(response.headers.get("Content-Range", ""))
            length = response.headers.get("Content-Length")
            yield ArtifactStream(
                response=response,
                offset=start,
                length=int(length) if length and length.isdigit() else None,
            )
        except httpx.TransportError as error:
            raise Unreachable(f"GET {path}: {_describe(error)}") from error
        finally:
            response.close()

    def _open_body(self, http: httpx.Client, request: httpx.Request, what: str) -> httpx.Response:
        """Send a streamed GET, logging it; a transport error becomes Unreachable."""
        started = time.monotonic()
        try:
            response = http.send(request, stream=True)
        except httpx.TransportError as error:
            self._log(request, None, started, error)
            raise Unreachable(f"{what}: {_describe(error)}") from error
        self._log(request, response, started)
        return response

    @staticmethod
    def _redirect_target(response: httpx.Response, path: str) -> httpx.URL:
        """Return where a download is redirected to, if it is a URL an agent may fetch."""
        raw = response.headers.get("Location", "")
        try:
            location = response.request.url.join(raw) if raw else None
        except httpx.InvalidURL:
            location = None
        if location is None or location.scheme not in ("http", "https") or not location.host:
            raise Unreachable(f"GET {path}: redirected to an unusable location {raw[:100]!r}")
        return location

    # --- plumbing -------------------------------------------------------------------------

    def _agent_path(self, leaf: str) -> str:
        if self.agent_id is None:
            raise ClientError("this client has no agent id: enroll first")
        return f"/api/v1/agents/{self.agent_id}/{leaf}"

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        request = self._http.build_request(method, path, **kwargs)
        try:
            response = self._http.send(request)
        except httpx.TransportError as error:
            self._log(request, None, started, error)
            raise Unreachable(f"{method} {self.url}{path}: {_describe(error)}") from error
        self._log(request, response, started)
        if response.status_code >= 400:
            self._raise_for(response)
        return response

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        error = error_from_response(response)
        if response.status_code >= 500:
            raise Unreachable(f"{response.request.method} {response.request.url}: {error}")
        raise Rejected(error)

    @staticmethod
    def _parse(model: type[Any], response: httpx.Response) -> Any:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as error:
            # A body we cannot read is a broken server (or proxy), not a refusal: retry later.
            raise Unreachable(
                f"{response.request.method} {response.request.url}: unreadable "
                f"{model.__name__} ({error.error_count()} problem(s))"
            ) from None

    @staticmethod
    def _log(
        request: httpx.Request,
        response: httpx.Response | None,
        started: float,
        error: Exception | None = None,
    ) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        target = request.url.raw_path.decode("ascii", "replace")
        if "X-Amz-Signature" in target or "Signature=" in target:
            # A presigned URL is a short-lived credential: log where, never the signature.
            target = f"{request.url.host}{request.url.path} (presigned)"
        if response is None:
            log.info(
                "%s %s failed after %.0f ms: %s",
                request.method,
                target,
                elapsed_ms,
                _describe(error),
            )
        else:
            level = logging.DEBUG if response.status_code in (200, 304) else logging.INFO
            log.log(
                level, "%s %s %d %.0f ms", request.method, target, response.status_code, elapsed_ms
            )


def _poll_hint(response: httpx.Response) -> float | None:
    raw = response.headers.get(POLL_HINT_HEADER)
    try:
        hint = float(raw) if raw is not None else None
    except ValueError:
        return None
    return hint if hint is not None and hint > 0 else None


def _range_start(content_range: str) -> int:
    # "bytes 100-999/1000"
    try:
        unit, _, rest = content_range.partition(" ")
        first = rest.split("-", 1)[0]
        if unit.strip().lower() != "bytes":
            raise ValueError(unit)
        return int(first)
    except ValueError:
        raise Unreachable(f"unreadable Content-Range {content_range!r}") from None


def _quote(etag: str) -> str:
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def _unquote(etag: str | None) -> str | None:
    if not etag:
        return None
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _describe(error: BaseException | None) -> str:
    if error is not None and (tls_failure := describe_tls_failure(error)):
        return tls_failure
    text = str(error) if error is not None else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
