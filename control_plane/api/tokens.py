"""Tokens: create admin, viewer and enrollment tokens; list and revoke them."""

from __future__ import annotations

from flask import Blueprint

from common.schemas import (
    ENROLLMENT_NEEDS_ENVIRONMENT,
    ENROLLMENT_ONLY,
    Role,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    TokenList,
)
from control_plane.api.routing import operation, parse_body
from control_plane.auth import ADMIN
from control_plane.context import get_store
from control_plane.errors import NotFound, Unprocessable

bp = Blueprint("tokens", __name__, url_prefix="/api/v1")
TAG = "tokens"


@operation(
    bp,
    "/tokens",
    "POST",
    roles=ADMIN,
    tag=TAG,
    body=TokenCreate,
    response=TokenCreated,
    status=201,
    errors=(404,),
)
def create_token():
    """Create a token; its secret is in this response only."""
    body = parse_body(TokenCreate)
    role = Role(body.role)
    if role is Role.enrollment:
        if body.environment is None:
            raise Unprocessable(
                ENROLLMENT_NEEDS_ENVIRONMENT,
                details=[{"field": "environment", "message": "required for enrollment tokens"}],
            )
        if get_store().environments.revision(body.environment) is None:
            raise NotFound(f"environment {body.environment!r} not found")
    else:
        for field, value in (("environment", body.environment), ("max_uses", body.max_uses)):
            if value is not None:
                raise Unprocessable(
                    ENROLLMENT_ONLY.format(field=field),
                    details=[{"field": field, "message": f"not allowed for {role.value} tokens"}],
                )
    created = get_store().tokens.create(
        role,
        environment=body.environment,
        expires_in=body.expires_in,
        max_uses=body.max_uses,
        description=body.description,
    )
    return created.model_dump(mode="json"), 201


@operation(bp, "/tokens", roles=ADMIN, tag=TAG, response=TokenList)
def list_tokens():
    """List tokens (never their secrets)."""
    return TokenList(tokens=get_store().tokens.list()).model_dump(mode="json")


@operation(
    bp,
    "/tokens/<token_id>",
    "DELETE",
    roles=ADMIN,
    tag=TAG,
    response=TokenInfo,
    errors=(404, 409),
)
def revoke_token(token_id: str):
    """Revoke a token: it stops working at once (an agent's, its next poll is refused)."""
    revoked = get_store().tokens.revoke(token_id)  # the last admin token: StateConflict, 409
    if revoked is None:
        raise NotFound(f"token {token_id!r} not found (or already revoked)")
    return revoked.model_dump(mode="json")
