"""Make a data directory an agent: online with an enrollment token, or from a provision file.

Either way the agent ends with its identity (id, token, URL), its own Ed25519 key and the
control-plane keys it trusts, written in that order so that the identity, written last, marks
the directory enrolled only once everything else is in place. Nothing is stored when a check
fails. The CLI (`tether agent enroll`, `tether agent provision`) only parses and prints.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.airgap.provision import ProvisionFile
from agent.errors import AgentError
from agent.local.state import Identity, StateStore
from agent.local.trust import TrustError, TrustStore, choose_trust, new_agent_key, save_agent_key
from agent.sync.client import ClientError, ControlPlaneClient
from common.clock import utcnow
from common.schemas import EnrollRequest
from common.signing import PublicKey, describe, load_private_key_pem
from common.tls import TlsFiles, TlsFilesError
from common.version import package_version


class EnrollmentFailed(AgentError):
    """The control plane refused, the keys it offers are not trusted, or nothing could be stored."""


@dataclass(frozen=True)
class Enrolled:
    identity: Identity
    trusted: list[PublicKey]


def enrollment_request(
    hostname: str, labels: dict[str, str]
) -> tuple[Ed25519PrivateKey, EnrollRequest]:
    """Make the agent's key pair and the request that registers its public key."""
    key = new_agent_key()
    request = EnrollRequest(
        hostname=hostname,
        labels=labels,
        agent_version=package_version(),
        public_key=describe(key.public_key()),
    )
    return key, request


def enroll_online(
    data_dir: Path,
    url: str,
    token: str,
    environment: str,
    *,
    pin: str | None,
    hostname: str | None = None,
    labels: dict[str, str] | None = None,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
    tls: TlsFiles | None = None,
) -> Enrolled:
    """Exchange an enrollment token for an identity; store it only once every check passed.

    `tls` (a private CA, a client certificate) is used for the request and stored with the
    identity, so that `tether agent run` connects the same way.
    """
    tls = (tls or TlsFiles()).absolute()
    key, request = enrollment_request(hostname or socket.gethostname(), labels or {})
    try:
        with ControlPlaneClient(url, timeout=timeout, transport=transport, tls=tls) as client:
            answer = client.enroll(token, request)
    except TlsFilesError as error:
        raise EnrollmentFailed(f"enrollment failed: {error}; nothing was stored") from None
    except ClientError as error:
        raise EnrollmentFailed(f"enrollment failed: {error}") from None
    if answer.environment != environment:
        raise EnrollmentFailed(
            f"the token enrolled this agent into {answer.environment!r}, not {environment!r}; "
            f"agent {answer.agent_id} exists there now, nothing was stored"
        )
    try:
        trusted = choose_trust(answer.signing_keys, pin)
    except TrustError as error:
        raise EnrollmentFailed(
            f"enrollment refused: {error}; agent {answer.agent_id} exists on the control plane "
            "now, nothing was stored here"
        ) from None
    identity = Identity(
        agent_id=answer.agent_id,
        token=answer.token,
        url=url,
        environment=answer.environment,
        hostname=request.hostname,
        labels=request.labels,
        enrolled_at=utcnow(),
        ca_file=tls.ca_file,
        client_cert=tls.client_cert,
        client_key=tls.client_key,
    )
    save_enrollment(data_dir, identity, key, trusted)
    return Enrolled(identity, trusted)


def enroll_from_file(data_dir: Path, provision: ProvisionFile, pin: str | None) -> Enrolled:
    """Make `data_dir` the provisioned agent, with no network at all."""
    try:
        trusted = choose_trust(provision.signing_keys, pin)
    except TrustError as error:
        raise EnrollmentFailed(f"enrollment refused: {error}") from None
    identity = Identity(
        agent_id=provision.agent_id,
        token=provision.token,
        url=provision.url,
        environment=provision.environment,
        hostname=provision.hostname,
        labels=provision.labels,
        enrolled_at=utcnow(),
    )
    key = load_private_key_pem(provision.private_key_pem.encode())
    save_enrollment(data_dir, identity, key, trusted)
    return Enrolled(identity, trusted)


def save_enrollment(
    data_dir: Path, identity: Identity, key: Ed25519PrivateKey, trusted: list[PublicKey]
) -> None:
    """Store the agent's key, the trusted keys, then the identity (which marks it enrolled)."""
    try:
        save_agent_key(data_dir, key)
        TrustStore(data_dir).save(trusted)
        StateStore(data_dir).save_identity(identity)
    except OSError as error:
        raise EnrollmentFailed(f"cannot write to {data_dir}: {error}") from None
