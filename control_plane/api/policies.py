"""An environment's policy: promotion, rollback and drift-alert rules."""

from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel

from common.names import check_name
from common.policy import Policy
from control_plane.api.routing import operation, parse_body
from control_plane.auth import ADMIN, READERS
from control_plane.context import get_store
from control_plane.errors import NotFound
from control_plane.store.db import write_transaction

bp = Blueprint("policies", __name__, url_prefix="/api/v1")
TAG = "policies"
SECRET_MASK = "*" * 16  # still a valid secret field, so the view matches the schema


@operation(
    bp,
    "/environments/<env>/policy",
    "PUT",
    roles=ADMIN,
    tag=TAG,
    body=Policy,
    response=Policy,
    errors=(404,),
)
def set_policy(env: str):
    """Replace the environment's policy; a section left out turns that rule off."""
    policy = parse_body(Policy)
    _existing(env)
    get_store().environments.set_policy(env, policy.model_dump(mode="json", exclude_none=True))
    return policy.model_dump(mode="json")


@operation(bp, "/environments/<env>/policy", roles=READERS, tag=TAG, response=Policy, errors=(404,))
def show_policy(env: str):
    """Show the environment's policy (webhook secrets are not shown)."""
    policy = Policy.model_validate(_existing(env))
    shown = policy.model_dump(mode="json")
    for hook in (shown.get("drift") or {}).get("webhooks", []):
        hook["secret"] = SECRET_MASK
    return shown


class BlockedVersion(BaseModel):
    model: str
    version: int
    reason: str


class BlockedList(BaseModel):
    blocked: list[BlockedVersion]


@operation(
    bp, "/environments/<env>/blocked", roles=READERS, tag=TAG, response=BlockedList, errors=(404,)
)
def list_blocked(env: str):
    """List versions the rollback rule blocked: no automatic action picks them again."""
    _existing(env)
    return BlockedList.model_validate({"blocked": get_store().events.all_blocked(env)}).model_dump()


@operation(
    bp,
    "/environments/<env>/blocked/<model>/<int:version>",
    "DELETE",
    roles=ADMIN,
    tag=TAG,
    response=BlockedList,
    errors=(404,),
)
def unblock(env: str, model: str, version: int):
    """Clear a blocked version, so automatic actions may pick it again."""
    _existing(env)
    check_name(model, "model name")
    store = get_store()
    with write_transaction(store.db):
        if not store.events.unblock(env, model, version):
            raise NotFound(f"{model} v{version} is not blocked in {env!r}")
    return BlockedList.model_validate({"blocked": store.events.all_blocked(env)}).model_dump()


def _existing(env: str) -> dict:
    check_name(env, "environment name")
    stored = get_store().environments.policy(env)
    if stored is None:
        raise NotFound(f"environment {env!r} not found")
    return stored
