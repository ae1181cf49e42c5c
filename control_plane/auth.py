"""Who may call what: bearer tokens, checked on every request, and their scopes."""

from __future__ import annotations

from collections.abc import Collection

from flask import g, request

from common.schemas import Role
from control_plane.context import get_store
from control_plane.errors import Forbidden, Unauthenticated
from control_plane.store.tokens import Principal

ADMIN = frozenset({Role.admin})
READERS = frozenset({Role.admin, Role.viewer})
ENROLLMENT = frozenset({Role.enrollment})
AGENTS = frozenset({Role.admin, Role.agent})
ARTIFACT_READERS = frozenset({Role.admin, Role.viewer, Role.agent})


def bearer_token() -> str | None:
    """Return the token of the Authorization header, if it has one."""
    # Straight from the WSGI environ: the same value, without EnvironHeaders' key translation.
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authorize(roles: Collection[Role]) -> Principal:
    """Authenticate the request and check its role; raise 401 or 403."""

    token = bearer_token()
    if token is None:
        raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = get_store().tokens.authenticate(token)
    if principal is None:
        raise Unauthenticated("invalid, expired or revoked token")
    if principal.role not in roles:
        allowed = ", ".join(sorted(role.value for role in roles))
        raise Forbidden(f"a {principal.role.value} token may not do this (needs: {allowed})")
    g.principal = principal
    return principal


def require_own_agent(principal: Principal, agent_id: str) -> None:
    """Let an agent token act only for its own agent (admins act for any)."""
    if principal.role is Role.agent and principal.agent_id != agent_id:
        raise Forbidden("an agent token may only act for its own agent")
