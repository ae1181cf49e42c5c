"""An environment's policy document: when to promote, roll back and alert on drift.

Every key is optional and unknown keys are refused; a section left out turns that rule off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromotePolicy(_Strict):
    """Promote the shadow when the fleet's comparison says it is at least as good."""

    auto: bool = Field(default=False, description="promote; otherwise raise 'ready_to_promote'")
    min_samples: int = Field(default=500, ge=1, description="compared requests across the fleet")
    min_agreement: float = Field(default=0.98, ge=0, le=1)
    accuracy_margin: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="with ground truth: shadow accuracy >= primary's minus this",
    )
    max_latency_ratio: float = Field(default=1.5, gt=0, description="shadow p95 / primary p95")
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="shadow errors / shadowed")


class RollbackPolicy(_Strict):
    """Restore the previous primary when enough agents report the new one failed."""

    failure_share: float = Field(default=0.5, gt=0, le=1)
    window_seconds: int = Field(default=600, ge=1)


class Webhook(_Strict):
    url: AnyHttpUrl
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)]


class DriftPolicy(_Strict):
    """Alert when fleet dataset drift holds for `consecutive` report windows."""

    consecutive: int = Field(default=3, ge=1, le=1000)
    webhooks: list[Webhook] = Field(default_factory=list, max_length=20)


class Policy(_Strict):
    promote: PromotePolicy | None = None
    rollback: RollbackPolicy | None = None
    drift: DriftPolicy | None = None


EventKind = Literal[
    "promotion", "ready_to_promote", "rollback", "drift_alert", "drift_resolved", "webhook_delivery"
]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)


class Event(BaseModel):
    """Something the control plane decided or did on its own, with the figures behind it."""

    id: int
    at: datetime
    kind: EventKind
    environment: str
    model: str
    version: int | None = None
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class EventList(BaseModel):
    events: list[Event]
