"""The dashboard: server-rendered pages at / for viewers and admins, plots drawn as inline SVG.

signin.py       /login, /logout
pages.py        /, /environments, /agents, /models, /events
environment.py  /environments/<env>: desired state, fleet, drift and shadow plots, history
actions.py      admins' set / promote / rollback, confirmed, through the API's own checks
figures.py      the numbers behind the plots; svg.py draws them
auth.py         sessions, bearer tokens, CSRF
blueprint.py    the blueprint itself: security headers, template filters, error pages
"""

from __future__ import annotations

from flask import Flask

# The page modules register their routes on the blueprint when imported.
from control_plane.dashboard import actions, environment, pages, signin  # noqa: F401
from control_plane.dashboard.auth import configure_sessions
from control_plane.dashboard.blueprint import bp


def init_dashboard(app: Flask) -> None:
    """Register the dashboard's pages and its session cookie settings on `app`."""
    settings = app.extensions["tether"].settings
    configure_sessions(app, settings.session_cookie_secure, settings.session_lifetime)
    app.register_blueprint(bp)
