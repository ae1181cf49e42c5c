"""HTTP layer: one blueprint per resource. Every route of the API is listed here."""

from __future__ import annotations

from flask import Flask

from control_plane.api import (
    agents,
    docs,
    environments,
    fleet,
    models,
    offline,
    operations,
    policies,
    reports,
    routing,
    tokens,
)

BLUEPRINTS = (
    models.bp,  # /api/v1/models...
    environments.bp,  # /api/v1/environments...
    agents.bp,  # /api/v1/agents...
    reports.bp,  # /api/v1/agents/<id>/reports, /api/v1/reports, /api/v1/events
    fleet.bp,  # /api/v1/environments/<env>/drift|shadow/<model>
    policies.bp,  # /api/v1/environments/<env>/policy, /blocked
    offline.bp,  # /api/v1/environments/<env>/bundle, /agents (provision), /api/v1/reports/import
    tokens.bp,  # /api/v1/tokens
    operations.bp,  # /healthz /readyz /openapi.json
    docs.bp,  # /docs
)


def register_blueprints(app: Flask) -> None:
    # Before the blueprints: their rules name these converters (routing.PATH_PARAMETERS).
    app.url_map.converters.update(routing.CONVERTERS)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
