"""HTTP layer: one blueprint per resource. Every route of the API is listed here."""

from __future__ import annotations

from flask import Flask

from control_plane.api import agents, docs, environments, models, operations, tokens

BLUEPRINTS = (
    models.bp,  # /api/v1/models...
    environments.bp,  # /api/v1/environments...
    agents.bp,  # /api/v1/agents...
    tokens.bp,  # /api/v1/tokens
    operations.bp,  # /healthz /readyz /openapi.json
    docs.bp,  # /docs
)


def register_blueprints(app: Flask) -> None:
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
