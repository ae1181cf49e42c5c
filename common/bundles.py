"""The offline formats: signed bundles in, signed report exports out, signed acknowledgements.

A bundle is a tar file: `manifest.json` (a SignedManifest) first, then one member
`sha256/<digest>` per artifact and reference profile the manifest names, and nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from common.reports import Report
from common.schemas import Heartbeat, Manifest
from common.signing import Signature

BUNDLE_MANIFEST = "manifest.json"
BUNDLE_BLOB_DIR = "sha256/"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class ReportExport(BaseModel):
    """An offline agent's outbox, signed with the agent's own key."""

    format: Literal["tether-reports/1"] = "tether-reports/1"
    agent_id: str
    environment: str
    exported_at: datetime
    reports: list[Report] = Field(max_length=100_000)
    heartbeats: list[Heartbeat] = Field(default_factory=list, max_length=100_000)
    signature: Signature | None = None

    def signed_part(self) -> dict[str, Any]:
        """Return what the signature covers: everything but the signature."""
        return self.model_dump(mode="json", exclude={"signature"})


class ReportAckFile(BaseModel):
    """The control plane's signed word that these reports are stored, for the trip back."""

    format: Literal["tether-ack/1"] = "tether-ack/1"
    agent_id: str
    acknowledged: list[str]
    stored: int
    duplicates: int
    issued_at: datetime
    signatures: list[Signature] = Field(default_factory=list)

    def signed_part(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"signatures"})


def manifest_files(manifest: Manifest) -> dict[str, int]:
    """Return every digest a manifest names (artifacts and reference profiles), with its size.

    A bundle holds exactly these files: the control plane writes them, the agent checks them.
    """
    files: dict[str, int] = {}
    for model in manifest.models.values():
        for entry in (model.primary, model.shadow):
            if entry is None:
                continue
            files[entry.artifact.sha256] = entry.artifact.size
            if entry.reference_profile is not None:
                files[entry.reference_profile.sha256] = entry.reference_profile.size
    return files
