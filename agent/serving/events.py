"""What a request leaves for the hooks: a prediction served, and ground truth for one.

The inference app builds these and hands them to its hooks after answering; shadow runs, drift
windows and metrics read them. They live apart from the app so those readers depend on the
data, not on the HTTP code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent.serving.runtime import Prediction
from agent.serving.slots import Deployed


@dataclass(frozen=True)
class PredictionEvent:
    """One successful prediction, handed to the `on_prediction` hook after the response."""

    model: str
    version: int
    request_id: str
    rows: list[dict[str, Any]]
    prediction: Prediction
    latency_seconds: float
    deployed: Deployed


@dataclass(frozen=True)
class Feedback:
    """Ground truth for an earlier request (and, for a batch, one row of it)."""

    model: str
    request_id: str
    label: Any
    index: int | None = None
    received_at: float = field(default_factory=time.time)
