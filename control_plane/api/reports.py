"""Reports from agents (idempotent batches) and the events the control plane raised."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, g, request
from pydantic import BaseModel, Field

from common.policy import EventKind, EventList
from common.reports import ReportAck, ReportBatch, ReportList
from common.schemas import Name, VersionNumber
from control_plane.api.routing import QueryTime, operation, parse_body, parse_query
from control_plane.auth import AGENTS, READERS, require_own_agent
from control_plane.context import get_store, settings
from control_plane.errors import NotFound

bp = Blueprint("reports", __name__, url_prefix="/api/v1")
TAG = "reports"


class ReportQuery(BaseModel):
    environment: Name | None = None
    model: Name | None = None
    version: VersionNumber | None = None
    agent: str | None = None
    kind: Literal["drift", "shadow"] | None = None
    since: QueryTime | None = Field(default=None, description="windows ending at or after this")
    limit: int = Field(default=1000, ge=1, le=10_000)


class EventQuery(BaseModel):
    environment: Name | None = None
    kind: EventKind | None = None
    since: QueryTime | None = None
    limit: int = Field(default=200, ge=1, le=5000)


@operation(
    bp,
    "/agents/<agent_id>/reports",
    "POST",
    roles=AGENTS,
    tag=TAG,
    body=ReportBatch,
    response=ReportAck,
    errors=(404,),
)
def receive_reports(agent_id: str):
    """Store a batch of drift and shadow reports; a report id seen before is acknowledged again.

    The agent deletes a report from its outbox only once it is in `stored` or `duplicates`.
    """
    require_own_agent(g.principal, agent_id)
    request.max_content_length = settings().max_report_batch_bytes
    batch = parse_body(ReportBatch)
    store = get_store()
    agent = store.agents.get(agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id!r} not found")
    stored, duplicates = store.reports.add_batch(agent_id, agent.environment, batch.reports)
    return ReportAck(stored=stored, duplicates=duplicates).model_dump()


@operation(bp, "/reports", roles=READERS, tag=TAG, query=ReportQuery, response=ReportList)
def list_reports():
    """List reports filtered by environment, model, version, agent, kind and time."""
    query = parse_query(ReportQuery)
    reports = get_store().reports.query(
        environment=query.environment,
        model=query.model,
        version=query.version,
        agent_id=query.agent,
        kind=query.kind,
        since=query.since,
        limit=query.limit,
    )
    return ReportList(reports=reports).model_dump(mode="json")


@operation(bp, "/events", roles=READERS, tag=TAG, query=EventQuery, response=EventList)
def list_events():
    """List promotions, rollbacks, drift alerts and webhook deliveries, newest first."""
    query = parse_query(EventQuery)
    events = get_store().events.list(
        environment=query.environment, kind=query.kind, since=query.since, limit=query.limit
    )
    return EventList(events=events).model_dump(mode="json")
