"""The operator's client of the control plane's REST API, used by the `tether` commands.

Every method returns the response body as its pydantic model from `common/schemas.py`. Errors
come from one tree:

    TetherError                 (common.errors)
     ├── ApiResponseError       the control plane answered with an error status (common.errors)
     └── Unreachable            no answer at all: connection refused, DNS failure, timeout
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from common.bundles import ReportAckFile
from common.errors import TetherError, raise_for_error
from common.policy import EventList, Policy
from common.reports import FleetDrift, FleetShadow
from common.schemas import (
    DesiredState,
    Environment,
    EnvironmentList,
    EnvironmentStatus,
    History,
    ModelDetail,
    ModelList,
    ModelVersion,
    TokenCreated,
    TokenInfo,
    TokenList,
)
from common.tls import TlsFiles, describe_tls_failure, ssl_context
from common.version import package_version
from control_plane.cli.config import Target
from control_plane.cli.upload import CountingReader

log = logging.getLogger("tether.cli")
ModelT = TypeVar("ModelT", bound=BaseModel)
API = "/api/v1"
# A bundle may be gigabytes: only the wait for each chunk is bounded, never the whole transfer.
BUNDLE_TIMEOUT = httpx.Timeout(120.0, connect=5.0)


class Unreachable(TetherError):
    """The control plane could not be reached at all."""

    def __init__(self, url: str, error: httpx.TransportError) -> None:
        tls_failure = describe_tls_failure(error)
        if tls_failure is not None:
            message = f"cannot talk to the control plane at {url}: {tls_failure}"
        else:
            reason = str(error) or type(error).__name__
            message = (
                f"cannot reach the control plane at {url}: {reason} "
                "(is `tether server` running there? set --url or TETHER_URL)"
            )
        super().__init__(message)
        self.url = url


def _path(*segments: str | int) -> str:
    # Quote every segment so a name like '../x' can never walk to another route.
    return API + "".join("/" + quote(str(segment), safe="") for segment in segments)


class OperatorClient:
    """Call the control plane's operator endpoints with one token."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        tls: TlsFiles | None = None,
    ) -> None:
        """`tls` names a private CA and a client certificate; a bad file raises TlsFilesError."""
        headers = {"User-Agent": f"tether-cli/{package_version()}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url
        self._http = httpx.Client(
            base_url=url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=5.0),
            verify=ssl_context(tls) if tls is not None and not tls.is_default else True,
        )

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- models -------------------------------------------------------------------------------

    def push_version(
        self,
        model: str,
        artifact: BinaryIO,
        metadata: dict[str, Any],
        *,
        filename: str = "model",
        on_progress: Callable[[int], None] | None = None,
        reference_profile: bytes | None = None,
    ) -> ModelVersion:
        """Upload a new version, streaming the artifact and reporting bytes sent."""
        reader = CountingReader(artifact, on_progress)
        files: dict[str, Any] = {"artifact": (filename, reader, "application/octet-stream")}
        if reference_profile is not None:
            files["reference_profile"] = ("profile.json", reference_profile, "application/json")
        response = self._request(
            "POST",
            _path("models", model, "versions"),
            data={"metadata": json.dumps(metadata)},
            files=files,
        )
        return ModelVersion.model_validate(response.json())

    def list_models(self) -> ModelList:
        """List models with their latest version."""
        return self._get(ModelList, _path("models"))

    def show_model(self, model: str) -> ModelDetail:
        """Show a model's versions and deployments."""
        return self._get(ModelDetail, _path("models", model))

    def show_version(self, model: str, version: int) -> ModelVersion:
        """Show one version of a model."""
        return self._get(ModelVersion, _path("models", model, "versions", version))

    # --- environments -------------------------------------------------------------------------

    def create_environment(
        self, env: str, description: str | None = None
    ) -> tuple[Environment, bool]:
        """Create an environment; also say whether it is new (False: it already existed)."""
        body = {} if description is None else {"description": description}
        response = self._request("PUT", _path("environments", env), json=body)
        return Environment.model_validate(response.json()), response.status_code == 201

    def list_environments(self) -> EnvironmentList:
        """List environments."""
        return self._get(EnvironmentList, _path("environments"))

    def desired(self, env: str) -> DesiredState:
        """Read an environment's desired state."""
        return self._get(DesiredState, _path("environments", env, "desired"))

    def set_desired(
        self,
        env: str,
        model: str,
        version: int,
        shadow: int | None = None,
        *,
        reason: str = "",
        if_match: int | None = None,
    ) -> DesiredState:
        """Set which version (and shadow) a model should run in an environment."""
        body = {"version": version, "shadow": shadow, "reason": reason}
        return self._change("PUT", _path("environments", env, "desired", model), if_match, body)

    def unset_desired(
        self, env: str, model: str, *, reason: str = "", if_match: int | None = None
    ) -> DesiredState:
        """Stop deploying a model in an environment."""
        return self._change(
            "DELETE",
            _path("environments", env, "desired", model),
            if_match,
            params={"reason": reason} if reason else None,
        )

    def promote(
        self, env: str, model: str, *, reason: str = "", if_match: int | None = None
    ) -> DesiredState:
        """Make the shadow version primary."""
        return self._change(
            "POST", _path("environments", env, "promote", model), if_match, {"reason": reason}
        )

    def rollback(
        self, env: str, model: str, *, reason: str = "", if_match: int | None = None
    ) -> DesiredState:
        """Restore the previous primary version."""
        return self._change(
            "POST", _path("environments", env, "rollback", model), if_match, {"reason": reason}
        )

    def history(self, env: str, limit: int = 100) -> History:
        """List an environment's audit log, newest first."""
        return self._get(History, _path("environments", env, "history"), params={"limit": limit})

    def status(
        self, env: str, *, state: str | None = None, offset: int = 0, limit: int = 100
    ) -> EnvironmentStatus:
        """Count the agents by state and show one page of them against the desired state."""
        params: dict[str, str | int] = {"offset": offset, "limit": limit}
        if state is not None:
            params["state"] = state
        return self._get(EnvironmentStatus, _path("environments", env, "status"), params=params)

    # --- tokens -------------------------------------------------------------------------------

    def create_token(
        self,
        role: str,
        *,
        environment: str | None = None,
        expires_in: int | None = None,
        max_uses: int | None = None,
        description: str = "",
    ) -> TokenCreated:
        """Create a token; its secret is in the answer only."""
        body: dict[str, Any] = {"role": role, "description": description}
        optional = {"environment": environment, "expires_in": expires_in, "max_uses": max_uses}
        body.update({key: value for key, value in optional.items() if value is not None})
        response = self._request("POST", _path("tokens"), json=body)
        return TokenCreated.model_validate(response.json())

    def list_tokens(self) -> TokenList:
        """List the tokens that work (never their secrets)."""
        return self._get(TokenList, _path("tokens"))

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revoke a token; it stops working at once."""
        return TokenInfo.model_validate(self._request("DELETE", _path("tokens", token_id)).json())

    # --- reports, events, policies -----------------------------------------------------------

    def fleet_drift(self, env: str, model: str, since: str | None = None) -> FleetDrift:
        """Return the fleet-wide drift of the serving version."""
        params = {"since": since} if since else None
        return self._get(FleetDrift, _path("environments", env, "drift", model), params=params)

    def fleet_shadow(self, env: str, model: str, since: str | None = None) -> FleetShadow:
        """Return the fleet-wide shadow comparison of the current pair."""
        params = {"since": since} if since else None
        return self._get(FleetShadow, _path("environments", env, "shadow", model), params=params)

    def events(self, **filters: Any) -> EventList:
        """List events, newest first."""
        params = {key: value for key, value in filters.items() if value is not None}
        return self._get(EventList, _path("events"), params=params)

    def set_policy(self, env: str, policy: dict[str, Any]) -> Policy:
        """Replace an environment's policy."""
        response = self._request("PUT", _path("environments", env, "policy"), json=policy)
        return Policy.model_validate(response.json())

    def show_policy(self, env: str) -> Policy:
        """Return an environment's policy (webhook secrets masked)."""
        return self._get(Policy, _path("environments", env, "policy"))

    # --- air-gapped sites ---------------------------------------------------------------------

    def export_bundle(
        self,
        env: str,
        out: BinaryIO,
        *,
        on_start: Callable[[int | None], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Stream an environment's signed bundle into `out`; return the bytes written.

        `on_start` gets the Content-Length (None if the server sent none), `on_progress` the
        bytes written so far after every chunk. A body shorter than announced raises.
        """
        path = _path("environments", env, "bundle")
        try:
            with self._http.stream(
                "GET", path, headers={"Accept": "application/x-tar"}, timeout=BUNDLE_TIMEOUT
            ) as response:
                if not response.is_success:
                    response.read()
                    raise_for_error(response)
                announced = response.headers.get("Content-Length")
                length = int(announced) if announced and announced.isdigit() else None
                if on_start is not None:
                    on_start(length)
                written = 0
                for chunk in response.iter_bytes(1024 * 1024):
                    out.write(chunk)
                    written += len(chunk)
                    if on_progress is not None:
                        on_progress(written)
        except httpx.TransportError as error:
            raise Unreachable(self.url, error) from error
        if length is not None and written != length:
            raise TetherError(f"the bundle ended after {written} of {length} bytes")
        return written

    def import_reports(self, export: bytes) -> ReportAckFile:
        """Send an offline agent's report export as it is; return the signed acknowledgement."""
        response = self._request(
            "POST",
            _path("reports", "import"),
            content=export,
            headers={"Content-Type": "application/json"},
        )
        return ReportAckFile.model_validate(response.json())

    # --- plumbing -----------------------------------------------------------------------------

    def _get(self, model: type[ModelT], path: str, **kwargs: Any) -> ModelT:
        return model.model_validate(self._request("GET", path, **kwargs).json())

    def _change(
        self,
        method: str,
        path: str,
        if_match: int | None,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> DesiredState:
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
        response = self._request(method, path, json=body, params=params, headers=headers)
        return DesiredState.model_validate(response.json())

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise Unreachable(self.url, error) from error
        log.debug("%s %s -> %s", method, path, response.status_code)
        return raise_for_error(response)


@dataclass(frozen=True)
class ClientFactory:
    """Build the client for a command; tests pass one with a transport as the click `obj`."""

    transport: httpx.BaseTransport | None = None

    def open(self, target: Target) -> OperatorClient:
        """Return a client for `target`, over this factory's transport if it has one."""
        return OperatorClient(target.url, target.token, transport=self.transport, tls=target.tls)
