"""Agents: enrollment, the manifest they poll, their heartbeats."""

from __future__ import annotations

import time

from flask import Blueprint, Response, g, request
from pydantic import BaseModel, Field
from werkzeug.http import quote_etag

from common.clock import utcnow
from common.schemas import (
    POLL_HINT_HEADER,
    AgentInfo,
    AgentList,
    EnrollRequest,
    EnrollResponse,
    Heartbeat,
    HeartbeatAck,
    Name,
    SignedManifest,
)
from control_plane.api.routing import operation, parse_body, parse_query
from control_plane.auth import AGENTS, ENROLLMENT, READERS, require_own_agent
from control_plane.context import get_store, settings, state
from control_plane.errors import NotFound
from control_plane.manifests import manifest_etag, poll_hint
from control_plane.store import Store
from control_plane.store.environments import PollState

bp = Blueprint("agents", __name__, url_prefix="/api/v1")
TAG = "agents"


class ManifestQuery(BaseModel):
    wait: int = Field(default=0, ge=0, description="Long-poll: seconds to wait for a new revision.")


class AgentQuery(BaseModel):
    environment: Name | None = None


@operation(
    bp,
    "/agents/enroll",
    "POST",
    roles=ENROLLMENT,
    tag=TAG,
    body=EnrollRequest,
    response=EnrollResponse,
    status=201,
    errors=(404, 409),
)
def enroll():
    """Exchange an enrollment token for an agent id and the agent's own token."""
    body = parse_body(EnrollRequest)
    store = get_store()
    if store.environments.revision(g.principal.environment) is None:
        raise NotFound(f"environment {g.principal.environment!r} no longer exists")
    agent, token = store.agents.enroll(g.principal, body)
    answer = EnrollResponse(
        agent_id=agent.id,
        token=token,
        environment=agent.environment,
        signing_keys=state().keys.current().public,
    )
    return answer.model_dump(mode="json"), 201


@operation(
    bp,
    "/agents/<agent_id>/manifest",
    roles=AGENTS,
    tag=TAG,
    query=ManifestQuery,
    response=SignedManifest,
    errors=(304, 404),
    response_headers={
        "ETag": "The revision of the manifest.",
        "If-None-Match": "The ETag last applied: answered with 304 while nothing changed.",
        POLL_HINT_HEADER: "Seconds to wait before the next poll.",
    },
)
def manifest(agent_id: str):
    """Fetch the desired state for this agent; poll it with If-None-Match, or long-poll with wait.

    This is the hot path of the whole fleet: a poll answered 304 is usually answered before it
    reaches here, by control_plane.poll_shortcut, with the same checks and headers.
    """
    principal = g.principal
    require_own_agent(principal, agent_id)
    store = get_store()
    environment = principal.environment
    if environment is None:  # an admin reading an agent's manifest
        agent = store.agents.get(agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id!r} not found")
        environment = agent.environment
    config = settings()
    # Only a long-poll carries a query string; parsing an absent one still costs on every poll.
    wait = min(parse_query(ManifestQuery).wait, config.long_poll_max) if request.query_string else 0
    found = _poll_state(store, environment)
    etag = manifest_etag(found.revision, state().keys.current().tag)
    unchanged = _agent_has(etag)
    if unchanged and wait > 0:
        with state().wait_room.seat(f"{principal.token_id}:{agent_id}", environment) as seat:
            # No seat (the worker holds all the waits it may): answered now, as a short poll.
            deadline = time.monotonic() + wait
            # The first look comes at once: a change announced before the seat was taken
            # would not wake it.
            pause = 0.0
            while seat is not None and unchanged and time.monotonic() < deadline:
                seat.pause(max(0.0, min(pause, deadline - time.monotonic())))
                if seat.displaced:
                    break  # a newer wait from the same caller took over
                pause = state().long_poll_step()
                found = _poll_state(store, environment)
                etag = manifest_etag(found.revision, state().keys.current().tag)
                unchanged = _agent_has(etag)
    hint = poll_hint(config, found.updated_at, found.lagging)
    if unchanged:
        # Naming a content type spares werkzeug a failed (exception-raising) header lookup;
        # a 304 is sent without it anyway.
        response = Response(status=304, content_type="application/json")
    else:
        keys = state().keys.current()
        cached = state().manifests.get(store, environment, found.revision, keys, found.manifest_ttl)
        if cached is None:  # deleted since the revision was read
            raise NotFound(f"environment {environment!r} not found")
        # The revision the manifest was built at: newer than the one read, if a change landed.
        etag = manifest_etag(cached.revision, keys.tag)
        response = Response(cached.body(hint), content_type="application/json")
    response.set_etag(etag)
    response.headers[POLL_HINT_HEADER] = str(hint)
    return response


def _poll_state(store: Store, environment: str) -> PollState:
    """Return the environment's revision, when it last changed, whether agents lag, its TTL."""
    found = store.environments.poll_state(environment)
    if found is None:
        raise NotFound(f"environment {environment!r} not found")
    return found


def _agent_has(etag: str) -> bool:
    """Tell whether the request's If-None-Match names `etag`, as a strong match or `*`."""
    header = request.environ.get("HTTP_IF_NONE_MATCH")
    if header is None:
        return False
    # An agent sends back exactly the ETag it was given: answer that without parsing the header.
    return header == quote_etag(etag) or request.if_none_match.contains(etag)


@operation(
    bp,
    "/agents/<agent_id>/heartbeat",
    "POST",
    roles=AGENTS,
    tag=TAG,
    body=Heartbeat,
    response=HeartbeatAck,
    errors=(404,),
)
def heartbeat(agent_id: str):
    """Report the agent's actual state per model, host facts and agent version."""
    require_own_agent(g.principal, agent_id)
    body = parse_body(Heartbeat)
    store = get_store()
    agent = store.agents.record_heartbeat(agent_id, body)
    if agent is None:
        raise NotFound(f"agent {agent_id!r} not found")
    ack = HeartbeatAck(
        agent_id=agent_id,
        received_at=utcnow(),
        desired_revision=store.environments.revision(agent.environment) or 0,
    )
    return ack.model_dump(mode="json")


@operation(bp, "/agents", roles=READERS, tag=TAG, query=AgentQuery, response=AgentList)
def list_agents():
    """List enrolled agents, optionally of one environment."""
    query = parse_query(AgentQuery)
    agents = get_store().agents.list(query.environment)
    return AgentList(agents=agents).model_dump(mode="json")


@operation(bp, "/agents/<agent_id>", roles=READERS, tag=TAG, response=AgentInfo, errors=(404,))
def show_agent(agent_id: str):
    """Show one agent: its last heartbeat's actual state and host facts."""
    agent = get_store().agents.get(agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id!r} not found")
    return agent.model_dump(mode="json")
