"""Admins change the desired state from the page: set, promote, roll back.

Each action takes two posts: the first shows what will change and asks for confirmation, the
second applies it, guarded by the revision that was shown (a change in between refuses, 412).
The checks are the REST API's own (`desired.check_model_action`, `desired.check_update`), the
change is the same store call with the same decision, and it lands in the audit log with the
reason.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from pydantic import ValidationError

from common.schemas import ActionReason, DesiredModelUpdate
from control_plane import desired as decide
from control_plane.context import get_store
from control_plane.dashboard.auth import admin_action
from control_plane.dashboard.blueprint import bp
from control_plane.dashboard.environment import previous_primary
from control_plane.desired import check_model_action, check_update
from control_plane.errors import Unprocessable, invalid_input
from control_plane.store.environments import Change

log = logging.getLogger("tether.dashboard")
ACTIONS = {"set": "Set the desired state", "promote": "Promote", "rollback": "Roll back"}


@bp.post("/environments/<env>/actions")
@admin_action
def change(env: str):  # type: ignore[no-untyped-def]
    """Preview an action for confirmation, or apply a confirmed one."""
    form = request.form
    action = form.get("action", "")
    if action not in ACTIONS:
        abort(400, f"Unknown action {action!r}.")
    model = form.get("model", "").strip()
    check_model_action(get_store(), env, model)
    reason = form.get("reason", "").strip()
    decision, fields = _decision(action, model, form, reason)
    if not reason:
        raise Unprocessable(
            "Give a reason: it goes into the audit log.",
            details=[{"field": "reason", "message": "required"}],
        )
    store = get_store()
    state = store.environments.desired(env)
    assert state is not None  # check_model_action found the environment
    if form.get("confirmed") != "yes":
        before = state.models.get(model)
        history = store.environments.history(env, limit=200)
        previous = previous_primary(history, model, before.version) if before else None
        # The same decision the store will apply: a refusal (409) shows now, not after confirming.
        after, _ = decision(before, previous)
        return render_template(
            "confirm.html",
            env=env,
            model=model,
            action=action,
            title=ACTIONS[action],
            before=before,
            after=after,
            reason=reason,
            revision=state.revision,
            fields=fields,
        )
    revision = _revision(form.get("revision", ""))
    result = store.environments.change(
        env,
        model,
        decision,
        action=action,
        actor=g.principal.actor,
        reason=reason,
        expected_revision=revision,
    )
    log.info("%s %s/%s from the dashboard by %s", action, env, model, g.principal.actor)
    entry = result.models.get(model)
    shown = "nothing" if entry is None else f"v{entry.version}"
    if entry is not None and entry.shadow is not None:
        shown += f" with shadow v{entry.shadow}"
    flash(f"{ACTIONS[action]}: {model} now serves {shown} (revision {result.revision}).")
    return redirect(url_for("dashboard.environment", env=env), code=303)


def _decision(action: str, model: str, form: Any, reason: str) -> tuple[Change, dict[str, Any]]:
    """Return the store decision for `action` and the form fields to carry to confirmation."""
    try:
        if action == "set":
            body = DesiredModelUpdate.model_validate(
                {
                    "version": _optional_int(form.get("version"), "version"),
                    "shadow": _optional_int(form.get("shadow"), "shadow"),
                    "reason": reason,
                }
            )
            check_update(get_store(), model, body)
            return decide.set_entry(body.version, body.shadow), {
                "version": body.version,
                "shadow": body.shadow if body.shadow is not None else "",
            }
        ActionReason.model_validate({"reason": reason})
    except ValidationError as error:
        raise invalid_input(error) from None
    return (decide.promote if action == "promote" else decide.rollback), {}


def _optional_int(raw: str | None, name: str) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise Unprocessable(
            f"{name} must be a whole number", details=[{"field": name, "message": "not a number"}]
        ) from None


def _revision(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        abort(400, "The confirmation lost the revision it was shown: start again.")
