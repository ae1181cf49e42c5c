"""The dashboard's blueprint: its security headers, template filters and error pages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Blueprint, Response, render_template
from werkzeug.exceptions import HTTPException

from common.display import ago
from control_plane.dashboard.auth import csrf_token, current_principal, is_admin
from control_plane.errors import answer_for
from control_plane.store.errors import RevisionMismatch

log = logging.getLogger("tether.dashboard")

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
    return {"principal": current_principal(), "is_admin": is_admin, "csrf_token": csrf_token}


bp.add_app_template_filter(ago, "ago")


@bp.app_template_filter("when")
def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("pct")
def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


@bp.app_template_filter("num")
def num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


@bp.errorhandler(Exception)
def _error_page(error: Exception) -> tuple[str, int]:
    """Answer an error on a page with an HTML page: the status and message the API would give."""
    answer = answer_for(error)
    message = answer.message
    if answer.status >= 500 and not isinstance(error, HTTPException):
        log.exception("unhandled error on a dashboard page")
    if isinstance(error, RevisionMismatch):
        message = f"The desired state changed while you were confirming ({error}). Look again."
    return render_template("error.html", status=answer.status, message=message), answer.status
