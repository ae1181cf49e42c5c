"""Health, readiness and the OpenAPI document (no /api/v1 prefix, no token)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from common.schemas import Health
from common.version import package_version
from control_plane.api.routing import operation
from control_plane.context import get_store, state
from control_plane.openapi import build_openapi

bp = Blueprint("operations", __name__)
TAG = "operations"


@operation(bp, "/healthz", roles=None, tag=TAG, response=Health)
def healthz():
    """Tell that the process is up."""
    return Health(status="ok").model_dump()


@operation(bp, "/readyz", roles=None, tag=TAG, response=Health, errors=(503,))
def readyz():
    """Tell whether the database and the artifact store answer."""
    details: dict[str, str] = {}
    try:
        get_store().db.execute("SELECT 1 FROM environments LIMIT 1").fetchall()
        details["database"] = "ok"
    except Exception as error:  # readiness reports every failure, it never raises
        details["database"] = f"error: {type(error).__name__}"
    details["artifacts"] = state().artifacts.check()
    ok = all(value == "ok" for value in details.values())
    body = Health(status="ok" if ok else "unavailable", details=details).model_dump()
    return body, 200 if ok else 503


@bp.get("/openapi.json")
def openapi_document():
    """Serve the OpenAPI document generated from the pydantic models."""
    cached = current_app.extensions.get("tether_openapi")
    if cached is None:
        cached = current_app.extensions["tether_openapi"] = build_openapi(package_version())
    return jsonify(cached)
