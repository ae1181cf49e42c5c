"""Browsable API docs at /docs: Swagger UI served from the installed package, never a CDN."""

from __future__ import annotations

from pathlib import Path

import flask_openapi3_swagger
from flask import Blueprint, Response, send_from_directory

# flask-openapi3-swagger ships Swagger UI's built files; only those files are used.
ASSETS = Path(flask_openapi3_swagger.__file__).parent / "templates" / "swagger"

bp = Blueprint("docs", __name__)

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tether API</title>
  <link rel="stylesheet" href="/docs/assets/css/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/js/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/js/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "BaseLayout",
      persistAuthorization: true
    });
  </script>
</body>
</html>
"""


@bp.get("/docs")
def docs_page() -> Response:
    """Show the API reference."""
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/assets/<path:name>")
def docs_asset(name: str) -> Response:
    return send_from_directory(ASSETS, name, max_age=86400)
