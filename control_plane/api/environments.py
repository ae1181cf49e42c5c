"""Environments: desired state, promotion, rollback, history and fleet status."""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel, Field

from common.clock import utcnow
from common.names import check_name
from common.schemas import (
    MAX_INTEGER,
    ActionReason,
    AgentState,
    DesiredModelUpdate,
    DesiredState,
    Environment,
    EnvironmentCreate,
    EnvironmentList,
    EnvironmentStatus,
    History,
)
from control_plane import desired as decide
from control_plane.api.routing import operation, parse_body, parse_query
from control_plane.auth import ADMIN, READERS
from control_plane.context import get_store, settings
from control_plane.desired import check_environment, check_model_action, check_update
from control_plane.errors import BadRequest, NotFound
from control_plane.fleet import fleet_page
from control_plane.store.environments import Change

bp = Blueprint("environments", __name__, url_prefix="/api/v1")
TAG = "environments"
MAX_REASON = 2000


class HistoryQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000)
    before: int | None = Field(
        default=None, ge=1, le=MAX_INTEGER, description="Only entries with a smaller id."
    )


class StatusQuery(BaseModel):
    state: AgentState | None = Field(default=None, description="Only agents in this state.")
    offset: int = Field(default=0, ge=0, le=MAX_INTEGER, description="Agents to skip.")
    limit: int = Field(default=100, ge=1, le=1000, description="Agents on the page.")


class ReasonQuery(BaseModel):
    reason: str = Field(default="", max_length=MAX_REASON, description="Why, for the history.")


@operation(
    bp,
    "/environments/<env>",
    "PUT",
    roles=ADMIN,
    tag=TAG,
    body=EnvironmentCreate,
    response=Environment,
    status=201,
    other_status=200,
)
def create_environment(env: str):
    """Create an environment; on an existing one, 200, updating the description if given."""
    check_name(env, "environment name")
    body = parse_body(EnvironmentCreate)
    environment, created = get_store().environments.create(env, body.description, body.manifest_ttl)
    return environment.model_dump(mode="json"), 201 if created else 200


@operation(bp, "/environments", roles=READERS, tag=TAG, response=EnvironmentList)
def list_environments():
    """List environments with their revisions."""
    return EnvironmentList(environments=get_store().environments.list()).model_dump(mode="json")


@operation(bp, "/environments/<env>", roles=READERS, tag=TAG, response=Environment, errors=(404,))
def show_environment(env: str):
    """Show one environment."""
    found = get_store().environments.get(check_environment(get_store(), env))
    return found.model_dump(mode="json") if found else None


@operation(
    bp,
    "/environments/<env>/desired",
    roles=READERS,
    tag=TAG,
    response=DesiredState,
    errors=(304, 404),
    response_headers={
        "ETag": "The environment's revision.",
        "If-None-Match": "A revision already held: answered with 304.",
    },
)
def show_desired(env: str):
    """Show the desired state: which version, and which shadow, each model should run."""
    state = get_store().environments.desired(check_environment(get_store(), env))
    assert state is not None
    return _with_etag(state)


@operation(
    bp,
    "/environments/<env>/desired/<model>",
    "PUT",
    roles=ADMIN,
    tag=TAG,
    body=DesiredModelUpdate,
    response=DesiredState,
    errors=(404, 409, 412),
    response_headers={"If-Match": "The revision this change is based on: 412 if stale."},
)
def set_desired(env: str, model: str):
    """Set the version (and optional shadow) a model should serve in an environment."""
    check_environment(get_store(), env)
    check_name(model, "model name")
    body = parse_body(DesiredModelUpdate)
    check_update(get_store(), model, body)
    return _change(env, model, decide.set_entry(body.version, body.shadow), "set", body.reason)


@operation(
    bp,
    "/environments/<env>/desired/<model>",
    "DELETE",
    roles=ADMIN,
    tag=TAG,
    query=ReasonQuery,
    response=DesiredState,
    errors=(404, 412),
)
def unset_desired(env: str, model: str):
    """Stop deploying a model in an environment."""
    check_environment(get_store(), env)
    check_name(model, "model name")
    state = get_store().environments.desired(env)
    if state is None or model not in state.models:
        raise NotFound(f"model {model!r} is not deployed in {env!r}")
    reason = parse_query(ReasonQuery).reason
    return _change(env, model, decide.remove_entry, "unset", reason)


@operation(
    bp,
    "/environments/<env>/promote/<model>",
    "POST",
    roles=ADMIN,
    tag=TAG,
    body=ActionReason,
    body_required=False,  # only a reason, for the history: `POST .../promote/wine` is enough
    response=DesiredState,
    errors=(404, 409, 412),
)
def promote(env: str, model: str):
    """Promote the shadow version to primary."""
    check_model_action(get_store(), env, model)
    body = parse_body(ActionReason)
    return _change(env, model, decide.promote, "promote", body.reason)


@operation(
    bp,
    "/environments/<env>/rollback/<model>",
    "POST",
    roles=ADMIN,
    tag=TAG,
    body=ActionReason,
    body_required=False,
    response=DesiredState,
    errors=(404, 409, 412),
)
def rollback(env: str, model: str):
    """Restore the previous primary version."""
    check_model_action(get_store(), env, model)
    body = parse_body(ActionReason)
    return _change(env, model, decide.rollback, "rollback", body.reason)


@operation(
    bp,
    "/environments/<env>/history",
    roles=READERS,
    tag=TAG,
    query=HistoryQuery,
    response=History,
    errors=(404,),
)
def history(env: str):
    """List the audit log of desired-state changes, newest first."""
    check_environment(get_store(), env)
    query = parse_query(HistoryQuery)
    entries = get_store().environments.history(env, limit=query.limit, before_id=query.before)
    return History(environment=env, entries=entries).model_dump(mode="json")


@operation(
    bp,
    "/environments/<env>/status",
    roles=READERS,
    tag=TAG,
    query=StatusQuery,
    response=EnvironmentStatus,
    errors=(404,),
)
def status(env: str):
    """Count the agents by state and show one page of them against the desired state.

    Failed agents come first, then stale (not heard from), lagging and converged ones, each
    by id; `state` keeps one of them, `offset` and `limit` page through.
    """
    store = get_store()
    query = parse_query(StatusQuery)
    desired = store.environments.desired(check_environment(store, env))
    assert desired is not None
    report = fleet_page(
        desired,
        store.agents.facts(env),
        store.agents.get_many,
        now=utcnow(),
        stale_after=settings().stale_after,
        state=query.state,
        offset=query.offset,
        limit=query.limit,
    )
    return report.model_dump(mode="json")


def _change(env: str, model: str, change: Change, action: str, reason: str) -> Response:
    state = get_store().environments.change(
        env,
        model,
        change,
        action=action,
        actor=g.principal.actor,
        reason=reason,
        expected_revision=_if_match(),
    )
    return _with_etag(state)


def _if_match() -> int | None:
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    try:
        revision = int(tag)
    except ValueError:
        revision = -1
    if not 0 <= revision <= MAX_INTEGER:
        raise BadRequest(f"If-Match must be a revision number, got {header!r}")
    return revision


def _with_etag(state: DesiredState) -> Response:
    response = jsonify(state.model_dump(mode="json"))
    response.set_etag(str(state.revision))
    # make_conditional is typed for werkzeug's Response; it returns this very Flask one.
    return cast(Response, response.make_conditional(request))
