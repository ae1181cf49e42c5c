"""Register model versions with a real control plane over HTTP, as an operator's script would."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import joblib

from common.drift import ReferenceProfile


def push_version(
    http: httpx.Client,
    model: str,
    estimator: Any,
    example: list[dict],
    profile: ReferenceProfile | None = None,
) -> dict:
    """Upload `estimator` (joblib) with its input example and profile; return the new version."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    files = {"artifact": ("m.joblib", buffer.getvalue())}
    if profile is not None:
        files["reference_profile"] = ("p.json", profile.model_dump_json().encode())
    response = http.post(
        f"/api/v1/models/{model}/versions",
        files=files,
        data={"metadata": json.dumps({"input_example": example})},
    )
    assert response.status_code == 201, response.text
    return response.json()
