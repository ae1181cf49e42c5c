"""Who is looking at the dashboard: a signed-in session or a bearer token, re-checked each time.

The session cookie holds the token itself, encrypted (Fernet, keyed from the app's secret key)
so that the cookie never shows it, and every page authenticates it against the store exactly as
the API authenticates a bearer token: a revoked or expired token ends the session at once.
Forms carry a CSRF token kept in the session; requests with a bearer header need none (browsers
never add that header on their own).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from flask import Flask, abort, current_app, flash, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from common.schemas import Role
from control_plane.auth import READERS, bearer_token
from control_plane.context import get_store
from control_plane.store.tokens import Principal

SESSION_TOKEN = "token"
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf_token"


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, free for requests without a cookie (every API call)."""

    def __init__(self, secure: bool | None) -> None:
        self.secure = secure

    def open_session(self, app: Flask, request: Any) -> Any:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)

    def get_cookie_secure(self, app: Flask) -> bool:
        # Unset: Secure exactly when the browser reached us over https.
        return request.is_secure if self.secure is None else self.secure


def configure_sessions(app: Flask, secure: bool | None, lifetime: int) -> None:
    """Set the session cookie's flags: HttpOnly, SameSite=Lax, Secure as configured."""
    app.session_interface = DashboardSessions(secure)
    app.config.update(
        SESSION_COOKIE_NAME="tether_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=lifetime),
    )


def sign_in(token: str) -> None:
    """Start a fresh session holding `token`, sealed."""
    session.clear()
    session.permanent = True
    session[SESSION_TOKEN] = _fernet().encrypt(token.encode()).decode()
    session[SESSION_CSRF] = secrets.token_urlsafe(32)


def sign_out() -> None:
    session.clear()


def csrf_token() -> str:
    """Return the session's CSRF token, making one on first use (e.g. for the sign-in form)."""
    token = session.get(SESSION_CSRF)
    if token is None:
        token = session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> None:
    """Refuse (400) a form post whose CSRF token is missing or wrong."""
    if g.get("dashboard_via") == "bearer":
        return
    sent = request.form.get(CSRF_FIELD, "")
    expected = session.get(SESSION_CSRF, "")
    if not sent or not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(400, "The form's CSRF token is missing or out of date: reload the page and retry.")


def authenticate(token: str) -> Principal | None:
    """Check a token against the store, as the API does."""

    return get_store().tokens.authenticate(token)


def current_principal() -> Principal | None:
    """Return who is calling, from the Authorization header or the session; None if nobody."""
    if "dashboard_principal" in g:
        return g.dashboard_principal  # type: ignore[no-any-return]
    principal = None
    token = bearer_token()
    if token is not None:
        g.dashboard_via = "bearer"
        principal = authenticate(token)
    elif SESSION_TOKEN in session:
        g.dashboard_via = "session"
        token = _unseal(str(session[SESSION_TOKEN]))
        principal = authenticate(token) if token is not None else None
        if principal is None or principal.role not in READERS:
            # Revoked, expired, or sealed under an older key: the session is over.
            session.clear()
            flash("Your session ended: the token was revoked or has expired. Sign in again.")
            principal = None
    g.dashboard_principal = principal
    if principal is not None:
        g.principal = principal  # the name the API layer uses for the actor
    return principal


def page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let viewers and admins see a page; send anyone else to sign in (or 401/403 for scripts)."""

    @wraps(view)
    def guarded(**kwargs: Any) -> Any:
        principal = current_principal()
        if principal is None:
            if g.get("dashboard_via") == "bearer":
                abort(401, "The bearer token is invalid, expired or revoked.")
            return redirect(url_for("dashboard.login", next=_here()))
        if principal.role not in READERS:
            abort(403, f"A {principal.role.value} token cannot use the dashboard.")
        return view(**kwargs)

    return guarded


def admin_action(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let only admins post a change, with a valid CSRF token."""

    @wraps(view)
    def guarded(**kwargs: Any) -> Any:
        principal = current_principal()
        if principal is None:
            if g.get("dashboard_via") == "bearer":
                abort(401, "The bearer token is invalid, expired or revoked.")
            return redirect(url_for("dashboard.login"))
        check_csrf()
        if principal.role is not Role.admin:
            abort(403, "Only an admin may change the desired state.")
        return view(**kwargs)

    return guarded


def is_admin() -> bool:
    principal = current_principal()
    return principal is not None and principal.role is Role.admin


def safe_next(target: str | None) -> str:
    """Return a local path to go to after signing in; anything else goes to the overview."""
    if not target:
        return url_for("dashboard.overview")
    parts = urlsplit(target)
    # Only our own paths: no scheme, no host, and not `//host` or `/\\host`.
    if parts.scheme or parts.netloc or not target.startswith("/") or target[1:2] in ("/", "\\"):
        return url_for("dashboard.overview")
    return target


def _here() -> str:
    query = request.query_string.decode()
    return request.path + (f"?{query}" if query else "")


def _fernet() -> Fernet:
    secret = current_app.secret_key
    raw = secret if isinstance(secret, bytes) else str(secret).encode()
    key = hashlib.sha256(b"tether dashboard session token\0" + raw).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _unseal(sealed: str) -> str | None:
    ttl = int(current_app.permanent_session_lifetime.total_seconds())
    try:
        return _fernet().decrypt(sealed.encode(), ttl=ttl).decode()
    except (InvalidToken, ValueError):
        return None
