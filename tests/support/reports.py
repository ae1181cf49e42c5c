"""Build realistic agent reports from real data, for control-plane tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd

from common.drift import ReferenceProfile, compare, sketch


def drift_report(
    profile: ReferenceProfile,
    frame: pd.DataFrame,
    model: str,
    version: int,
    *,
    end: datetime | None = None,
    minutes: int = 1,
) -> dict:
    """A drift report of `frame` as an agent would send it."""
    end = end or datetime.now(UTC)
    window = sketch(profile, frame)
    return {
        "id": uuid.uuid4().hex,
        "kind": "drift",
        "model": model,
        "version": version,
        "window_start": (end - timedelta(minutes=minutes)).isoformat(),
        "window_end": end.isoformat(),
        "requests": len(frame),
        "drift": {
            "sketch": window.model_dump(mode="json"),
            "report": compare(profile, window).model_dump(mode="json"),
        },
    }


def shadow_report(
    model: str,
    version: int,
    shadow_version: int,
    *,
    shadowed: int,
    agreed: int,
    errors: int = 0,
    primary_p95: float = 2.0,
    shadow_p95: float = 2.2,
    end: datetime | None = None,
) -> dict:
    """A shadow report of a classifier pair as an agent would send it."""
    end = end or datetime.now(UTC)
    return {
        "id": uuid.uuid4().hex,
        "kind": "shadow",
        "model": model,
        "version": version,
        "shadow_version": shadow_version,
        "window_start": (end - timedelta(minutes=1)).isoformat(),
        "window_end": end.isoformat(),
        "requests": shadowed,
        "shadow": {
            "requests": shadowed,
            "shadowed": shadowed,
            "dropped": 0,
            "shadow_errors": errors,
            "kind": "classifier",
            "agreement": agreed / shadowed if shadowed else None,
            "agreed": agreed,
            "primary_latency": {"p50": 1.0, "p95": primary_p95, "p99": primary_p95 * 1.5},
            "shadow_latency": {"p50": 1.1, "p95": shadow_p95, "p99": shadow_p95 * 1.5},
        },
    }
