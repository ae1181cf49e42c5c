"""Sign in with a viewer or admin token; sign out."""

from __future__ import annotations

import logging

from flask import redirect, render_template, request, url_for

from control_plane.auth import READERS
from control_plane.dashboard.auth import (
    authenticate,
    check_csrf,
    current_principal,
    safe_next,
    sign_in,
    sign_out,
)
from control_plane.dashboard.blueprint import bp

log = logging.getLogger("tether.dashboard")


@bp.get("/login")
def login():  # type: ignore[no-untyped-def]
    """Show the sign-in form (or go on, when already signed in)."""
    target = request.args.get("next", "")
    if current_principal() is not None:
        return redirect(safe_next(target))
    return render_template("login.html", next=target, error=None)


@bp.post("/login")
def login_submit():  # type: ignore[no-untyped-def]
    """Check the token and start a session."""
    check_csrf()
    token = request.form.get("token", "").strip()
    target = request.form.get("next", "")
    principal = authenticate(token) if token else None
    if principal is None:
        error = (
            "Paste a viewer or admin token."
            if not token
            else "That token is not valid: it is unknown, expired or revoked."
        )
        return render_template("login.html", next=target, error=error), 401
    if principal.role not in READERS:
        error = (
            f"That is an {principal.role.value} token, which cannot sign in here: "
            "use a viewer or admin token (tether token create --role viewer)."
        )
        return render_template("login.html", next=target, error=error), 403
    sign_in(token)
    log.info("dashboard sign-in by %s", principal.actor)
    return redirect(safe_next(target))


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    """End the session."""
    check_csrf()
    sign_out()
    return redirect(url_for("dashboard.login"))
