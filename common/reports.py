"""What agents report: drift windows and shadow comparisons, sent in idempotent batches."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.drift import DriftReport, WindowSketch
from common.schemas import MAX_INTEGER, Name, VersionNumber

ReportId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
# Rules across a report's fields (see common.schemas.SHADOW_DIFFERS): the refusal's words, and
# the schema's.
DRIFT_NEEDS_BODY = "a drift report needs a 'drift' body"
SHADOW_NEEDS_BODY = "a shadow report needs 'shadow' and 'shadow_version'"
WINDOW_IN_ORDER = "window_end must not be before window_start"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class LatencyQuantiles(_Strict):
    """Latency of a model over a window, in milliseconds."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class ShadowMetrics(_Strict):
    """How the shadow compared with the primary on the same requests of one window."""

    requests: int = Field(ge=0, description="requests the primary answered")
    shadowed: int = Field(ge=0, description="requests the shadow also answered")
    dropped: int = Field(ge=0, description="requests not shadowed because the queue was full")
    shadow_errors: int = Field(ge=0)
    kind: Literal["classifier", "regressor"]
    agreement: float | None = Field(default=None, ge=0, le=1, description="classifiers: same label")
    agreed: int | None = Field(default=None, ge=0, description="classifiers: requests that agreed")
    mean_abs_proba_diff: float | None = Field(default=None, ge=0)
    mean_abs_diff: float | None = Field(default=None, ge=0, description="regressors")
    max_abs_diff: float | None = Field(default=None, ge=0, description="regressors")
    correlation: float | None = Field(default=None, ge=-1, le=1, description="regressors")
    primary_latency: LatencyQuantiles = Field(default_factory=LatencyQuantiles)
    shadow_latency: LatencyQuantiles = Field(default_factory=LatencyQuantiles)
    labelled: int = Field(default=0, ge=0, description="requests with ground truth from feedback")
    primary_correct: int | None = Field(
        default=None, ge=0, description="classifiers, with feedback"
    )
    shadow_correct: int | None = Field(default=None, ge=0, description="classifiers, with feedback")
    primary_mae: float | None = Field(default=None, ge=0, description="regressors, with feedback")
    shadow_mae: float | None = Field(default=None, ge=0, description="regressors, with feedback")


class DriftWindow(_Strict):
    """A window's sketch on the reference profile's bins, and the agent's own comparison."""

    sketch: WindowSketch | None = None
    report: DriftReport | None = None
    reason: str | None = Field(default=None, description="why there is no drift figure, if none")


class Report(_Strict):
    """One window of one model version on one agent; `id` makes re-sending harmless."""

    id: ReportId
    kind: Literal["drift", "shadow"] = Field(
        description=f"What the report holds: {DRIFT_NEEDS_BODY}; {SHADOW_NEEDS_BODY}."
    )
    model: Name
    version: VersionNumber
    shadow_version: VersionNumber | None = None
    window_start: datetime
    window_end: datetime = Field(description=f"The window's end: {WINDOW_IN_ORDER}.")
    requests: int = Field(ge=0, le=MAX_INTEGER)
    drift: DriftWindow | None = None
    shadow: ShadowMetrics | None = None

    @model_validator(mode="after")
    def _body_matches_kind(self) -> Report:
        if self.kind == "drift" and self.drift is None:
            raise ValueError(DRIFT_NEEDS_BODY)
        if self.kind == "shadow" and (self.shadow is None or self.shadow_version is None):
            raise ValueError(SHADOW_NEEDS_BODY)
        if self.window_end < self.window_start:
            raise ValueError(WINDOW_IN_ORDER)
        return self


class ReportBatch(_Strict):
    reports: list[Report] = Field(min_length=1, max_length=500)


class ReportAck(BaseModel):
    """Which reports were stored now and which were already there: both are acknowledged."""

    stored: list[str]
    duplicates: list[str]


class StoredReport(Report):
    agent_id: str
    environment: str
    received_at: datetime


class ReportList(BaseModel):
    reports: list[StoredReport]


class AgentDrift(BaseModel):
    windows: int
    rows: int
    dataset_drift: bool | None
    share_drifted: float | None


class FleetDrift(BaseModel):
    """Drift of the serving version across the fleet: every agent's sketch merged exactly."""

    environment: str
    model: str
    version: int | None
    windows: int
    report: DriftReport | None
    reason: str | None = None
    agents: dict[str, AgentDrift] = Field(default_factory=dict)


class ShadowTotals(BaseModel):
    """Shadow comparisons summed over reports (latency quantiles: the worst window's)."""

    windows: int = 0
    requests: int = 0
    shadowed: int = 0
    dropped: int = 0
    shadow_errors: int = 0
    agreement: float | None = None
    error_rate: float | None = None
    mean_abs_diff: float | None = None
    primary_p95_ms: float | None = None
    shadow_p95_ms: float | None = None
    latency_ratio: float | None = None
    labelled: int = 0
    primary_accuracy: float | None = None
    shadow_accuracy: float | None = None


class FleetShadow(BaseModel):
    environment: str
    model: str
    version: int | None
    shadow_version: int | None
    fleet: ShadowTotals
    agents: dict[str, ShadowTotals] = Field(default_factory=dict)
