"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask

from common.config import load_settings
from control_plane.api import register_blueprints
from control_plane.bootstrap import bootstrap, session_key
from control_plane.context import TetherState, close_store
from control_plane.dashboard import init_dashboard
from control_plane.errors import register_error_handlers
from control_plane.metrics import init_metrics
from control_plane.poll_shortcut import UnchangedManifestShortcut
from control_plane.settings import ControlPlaneSettings
from control_plane.uploads import UploadingRequest, discard_unkept_uploads


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings from defaults, file, environment and `config`, then the rest."""
    config = dict(config or {})
    config_file = config.pop("config_file", None)
    settings = load_settings(ControlPlaneSettings, config_file, overrides=config)

    app = Flask(__name__)
    app.request_class = UploadingRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    tether = TetherState(settings)
    tether.new_admin_token = bootstrap(settings)
    app.extensions["tether"] = tether
    app.secret_key = session_key(settings.session_key_path)

    init_metrics(app)  # first, so that its timing hooks wrap every other hook
    register_blueprints(app)
    init_dashboard(app)
    register_error_handlers(app)
    app.teardown_appcontext(close_store)
    app.teardown_appcontext(discard_unkept_uploads)
    app.wsgi_app = UnchangedManifestShortcut(  # type: ignore[method-assign]
        app.wsgi_app, tether, app.extensions["tether_metrics"]
    )
    return app
