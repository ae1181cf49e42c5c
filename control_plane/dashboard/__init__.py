"""The dashboard: server-rendered pages at / for viewers and admins, plots drawn as inline SVG.

signin.py       /login, /logout
pages.py        /, /environments, /agents, /models, /events
environment.py  /environments/<env>: desired state, fleet, drift and shadow plots, history
actions.py      admins' set / promote / rollback, confirmed, through the API's own checks
figures.py      the numbers behind the plots; svg.py draws them
auth.py         sessions, bearer tokens, CSRF
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, render_template
from werkzeug.exceptions import HTTPException

from common.names import InvalidName
from control_plane.dashboard.auth import configure_sessions, csrf_token, current_principal
from control_plane.errors import ApiError
from control_plane.store.errors import RecordMissing, RevisionMismatch, StateConflict

# Pages load only their own CSS and JS; inline styles are the convergence bars' widths.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)


def init_dashboard(app: Flask) -> None:
    """Register the dashboard's pages and its session cookie settings on `app`."""
    from control_plane.dashboard import actions, environment, pages, signin  # noqa: F401

    settings = app.extensions["tether"].settings
    configure_sessions(app, settings.session_cookie_secure, settings.session_lifetime)
    app.register_blueprint(bp)


@bp.after_request
def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        headers["Cache-Control"] = "no-store"  # pages show fleet data behind a sign-in
    return response


@bp.context_processor
def _template_context() -> dict[str, object]:
    from control_plane.dashboard.auth import is_admin

    return {"principal": current_principal(), "is_admin": is_admin, "csrf_token": csrf_token}


@bp.app_template_filter("ago")
def ago(moment: datetime | None) -> str:
    """Say how long ago `moment` was, coarsely."""
    if moment is None:
        return "never"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 0:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


@bp.app_template_filter("when")
def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("pct")
def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


@bp.app_template_filter("num")
def num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int]:
    return _error_page(error.code or 500, error.description or error.name)


@bp.errorhandler(ApiError)
def _api_error(error: ApiError) -> tuple[str, int]:
    return _error_page(error.status, error.message)


@bp.errorhandler(InvalidName)
def _bad_name(error: InvalidName) -> tuple[str, int]:
    return _error_page(422, str(error))


@bp.errorhandler(RecordMissing)
def _missing(error: RecordMissing) -> tuple[str, int]:
    return _error_page(404, str(error))


@bp.errorhandler(RevisionMismatch)
def _stale(error: RevisionMismatch) -> tuple[str, int]:
    return _error_page(
        412, f"The desired state changed while you were confirming ({error}). Look again."
    )


@bp.errorhandler(StateConflict)
def _conflict(error: StateConflict) -> tuple[str, int]:
    return _error_page(409, str(error))
