"""Drift statistics on compact, mergeable reference profiles.

    profile = build_profile(training_frame, predictions=model.predict(training_frame))
    window = sketch(profile, live_rows)          # counts on the profile's bins
    window.add({"age": 41, "city": "Lyon"})      # cheap: runs on the predict path
    fleet = window.merge(other_agent_window)     # exact
    report = compare(profile, fleet)             # report.dataset_drift, report.features["age"]

The profile, the sketch and the report are pydantic models that round-trip through JSON.
"""

from __future__ import annotations

from common.drift.compare import DriftReport, FeatureDrift, TestName, compare
from common.drift.frames import PREDICTION
from common.drift.profile import ReferenceProfile, build_profile
from common.drift.sketch import ProfileMismatch, WindowSketch, sketch

__all__ = [
    "PREDICTION",
    "DriftReport",
    "FeatureDrift",
    "ProfileMismatch",
    "ReferenceProfile",
    "TestName",
    "WindowSketch",
    "build_profile",
    "compare",
    "sketch",
]
