"""The offline formats: signed bundles in, signed report exports out, signed acknowledgements.

A bundle is a tar file: `manifest.json` (a SignedManifest) first, then one member
`sha256/<digest>` per artifact and reference profile the manifest names, and nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from common.reports import Report
from common.schemas import Heartbeat
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
