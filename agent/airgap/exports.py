"""Air-gapped sites, the agent's side: provisioned identities, report exports, acknowledgements.

    tether agent provision ENV --out FILE   (operator machine, admin token)  -> ProvisionFile
    tether agent enroll --from-file FILE    (the site, no network)           -> identity, keys
    tether agent export-reports --out FILE  (the site)                       -> ReportExport
    tether agent import-ack FILE            (the site)                       -> outbox cleared

Bundles, the way in, are agent.airgap.bundle. Everything here reads and writes the data
directory only; an agent with `mode = "offline"` never opens a connection (OfflineTransport).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, Field, ValidationError

from agent.errors import AgentError
from agent.local.outbox import Outbox
from agent.local.state import AgentState, Identity, StateStore
from agent.local.trust import TrustError, TrustStore, choose_trust, load_agent_key, save_agent_key
from common.bundles import ReportAckFile, ReportExport
from common.clock import utcnow
from common.files import write_atomic
from common.schemas import Heartbeat
from common.signing import BadSignature, PublicKey, load_private_key_pem, sign

OUTBOX_FILE = "outbox.db"
MAX_EXPORT_REPORTS = 100_000  # what one ReportExport may carry


class OfflineError(AgentError):
    """An offline file is unreadable, for another agent, or does not verify."""


class OfflineTransport(httpx.BaseTransport):
    """Refuse every request without touching the network: the client of an offline agent."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(
            'mode = "offline": this agent never connects; bring models with '
            "`tether agent import-bundle`",
            request=request,
        )


# --- enrollment -------------------------------------------------------------------------------


class ProvisionFile(BaseModel):
    """Everything an air-gapped host needs to be an agent; a secret, kept mode 0600."""

    format: Literal["tether-provision/1"] = "tether-provision/1"
    agent_id: str
    token: str
    environment: str
    url: str
    hostname: str
    labels: dict[str, str] = Field(default_factory=dict)
    private_key_pem: str = Field(description="The agent's own Ed25519 key, PKCS#8 PEM.")
    signing_keys: list[PublicKey] = Field(description="The control plane's public keys.")
    created_at: datetime


def read_provision_file(path: Path) -> ProvisionFile:
    """Read a provision file, checking that its private key is an Ed25519 key."""
    try:
        provision = ProvisionFile.model_validate_json(Path(path).read_bytes())
        load_private_key_pem(provision.private_key_pem.encode())
    except OSError as error:
        raise OfflineError(f"cannot read {path}: {error.strerror or error}") from None
    except ValidationError as error:
        raise OfflineError(
            f"{path} is not a tether provision file ({error.error_count()} problem(s))"
        ) from None
    except ValueError as error:
        raise OfflineError(f"{path}: unusable agent key: {error}") from None
    return provision


def save_enrollment(
    data_dir: Path, identity: Identity, key: Ed25519PrivateKey, trusted: list[PublicKey]
) -> None:
    """Store the agent's key, the trusted keys, then the identity (which marks it enrolled)."""
    save_agent_key(data_dir, key)
    TrustStore(data_dir).save(trusted)
    StateStore(data_dir).save_identity(identity)


def enroll_from_file(data_dir: Path, provision: ProvisionFile, pin: str | None) -> Identity:
    """Make `data_dir` the provisioned agent, with no network at all."""
    trusted = choose_trust(provision.signing_keys, pin)
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
    return identity


# --- reports out, acknowledgements in ---------------------------------------------------------


def heartbeat_from_state(identity: Identity, state: AgentState, agent_version: str) -> Heartbeat:
    """Describe the agent's actual state now, as a poll's heartbeat would."""
    return Heartbeat(
        agent_version=agent_version,
        hostname=identity.hostname,
        labels=identity.labels,
        applied_revision=state.applied.revision if state.applied else 0,
        models=dict(state.actual),
    )


def _enrolled(data_dir: Path) -> Identity:
    identity = StateStore(data_dir).load_identity()
    if identity is None:
        raise OfflineError(f"no agent identity in {data_dir}: enroll it first")
    return identity


@dataclass(frozen=True)
class Exported:
    export: ReportExport
    left_behind: int  # reports beyond what one file carries: export again after the ack


def export_reports(data_dir: Path, out: Path, agent_version: str) -> Exported:
    """Write the outbox (reports and heartbeats) to `out`, signed with the agent's own key.

    The reports stay in the outbox until `import_ack` clears them.
    """
    identity = _enrolled(data_dir)
    try:
        key = load_agent_key(data_dir)
    except TrustError as error:
        raise OfflineError(str(error)) from None
    state = StateStore(data_dir).load()
    outbox = Outbox(Path(data_dir) / OUTBOX_FILE)
    try:
        reports = outbox.pending(MAX_EXPORT_REPORTS)
        heartbeats = [*outbox.heartbeats(), heartbeat_from_state(identity, state, agent_version)]
        waiting = outbox.depth()
    finally:
        outbox.close()
    export = ReportExport(
        agent_id=identity.agent_id,
        environment=identity.environment,
        exported_at=utcnow(),
        reports=reports,
        heartbeats=heartbeats[-100:],
    )
    export.signature = sign(key, export.signed_part())
    write_atomic(Path(out), export.model_dump_json().encode(), mode=0o644)
    return Exported(export=export, left_behind=waiting - len(reports))


@dataclass(frozen=True)
class AckApplied:
    removed: int
    remaining: int
    ack: ReportAckFile


def import_ack(data_dir: Path, path: Path) -> AckApplied:
    """Verify an acknowledgement file and drop the reports it names from the outbox.

    It must be signed by a control-plane key this agent trusts and be for this agent; a forged
    or foreign acknowledgement clears nothing.
    """
    identity = _enrolled(data_dir)
    try:
        ack = ReportAckFile.model_validate_json(Path(path).read_bytes())
    except OSError as error:
        raise OfflineError(f"cannot read {path}: {error.strerror or error}") from None
    except ValidationError as error:
        raise OfflineError(
            f"{path} is not a tether acknowledgement ({error.error_count()} problem(s))"
        ) from None
    try:
        TrustStore(data_dir).verify(ack.signed_part(), ack.signatures)
    except (BadSignature, TrustError) as error:
        raise OfflineError(f"{path} refused, nothing cleared: {error}") from None
    if ack.agent_id != identity.agent_id:
        raise OfflineError(
            f"{path} acknowledges reports of agent {ack.agent_id}, this is {identity.agent_id}; "
            "nothing cleared"
        )
    outbox = Outbox(Path(data_dir) / OUTBOX_FILE)
    try:
        removed = outbox.acknowledge(ack.acknowledged)
        remaining = outbox.depth()
    finally:
        outbox.close()
    return AckApplied(removed=removed, remaining=remaining, ack=ack)
