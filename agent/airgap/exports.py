"""Reports from an air-gapped site: signed exports out, the control plane's acknowledgements in.

    tether agent export-reports --out FILE  (the site)                       -> ReportExport
    tether agent import-ack FILE            (the site)                       -> outbox cleared

Identities come in by provision files (agent.airgap.provision), models by bundles
(agent.airgap.bundle). Everything here reads and writes the data directory only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from agent.errors import AgentError
from agent.local.datadir import outbox_path
from agent.local.outbox import Outbox
from agent.local.state import Identity, StateStore, heartbeat_of
from agent.local.trust import TrustError, TrustStore, load_agent_key
from common.bundles import ReportAckFile, ReportExport
from common.clock import utcnow
from common.files import write_atomic
from common.signing import BadSignature, sign

MAX_EXPORT_REPORTS = 100_000  # what one ReportExport may carry


class OfflineError(AgentError):
    """An offline file is unreadable, for another agent, or does not verify."""


# --- reports out, acknowledgements in ---------------------------------------------------------


def _enrolled(data_dir: Path) -> Identity:
    identity = StateStore(data_dir).load_identity()
    if identity is None:
        raise OfflineError(f"no agent identity in {data_dir}: enroll it first")
    return identity


@dataclass(frozen=True)
class Exported:
    export: ReportExport
    left_behind: int  # reports beyond what one file carries: export again after the ack


def write_report_export(data_dir: Path, out: Path) -> Exported:
    """Write the outbox's reports and a heartbeat of the agent's state to `out`, signed.

    The reports stay in the outbox until `apply_ack_file` clears them.
    """
    identity = _enrolled(data_dir)
    try:
        key = load_agent_key(data_dir)
    except TrustError as error:
        raise OfflineError(str(error)) from None
    state = StateStore(data_dir).load()
    outbox = Outbox(outbox_path(data_dir))
    try:
        reports = outbox.pending(MAX_EXPORT_REPORTS)
        waiting = outbox.depth()
    finally:
        outbox.close()
    export = ReportExport(
        agent_id=identity.agent_id,
        environment=identity.environment,
        exported_at=utcnow(),
        reports=reports,
        # The control plane records the newest heartbeat: the agent's state as it leaves.
        heartbeats=[heartbeat_of(state, identity.hostname, identity.labels)],
    )
    export.signature = sign(key, export.signed_part())
    write_atomic(Path(out), export.model_dump_json().encode(), mode=0o644)
    return Exported(export=export, left_behind=waiting - len(reports))


@dataclass(frozen=True)
class AckApplied:
    removed: int
    remaining: int
    ack: ReportAckFile


def apply_ack_file(data_dir: Path, path: Path) -> AckApplied:
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
    outbox = Outbox(outbox_path(data_dir))
    try:
        removed = outbox.acknowledge(ack.acknowledged)
        remaining = outbox.depth()
    finally:
        outbox.close()
    return AckApplied(removed=removed, remaining=remaining, ack=ack)
