"""Fleet-wide drift and shadow views of one model in one environment."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from flask import Blueprint
from pydantic import BaseModel, Field

from common.clock import utcnow
from common.drift import ReferenceProfile
from common.names import check_name
from common.reports import FleetDrift, FleetShadow
from control_plane.api.routing import QueryTime, operation, parse_query
from control_plane.auth import READERS
from control_plane.context import get_store, state
from control_plane.errors import NotFound
from control_plane.fleet_reports import fleet_drift, shadow_totals
from control_plane.store import Store

bp = Blueprint("fleet", __name__, url_prefix="/api/v1")
TAG = "fleet"
DEFAULT_LOOKBACK = timedelta(hours=1)


class SinceQuery(BaseModel):
    since: QueryTime | None = Field(
        default=None, description="Windows ending after this [1 h ago]."
    )


@operation(
    bp,
    "/environments/<env>/drift/<model>",
    roles=READERS,
    tag=TAG,
    query=SinceQuery,
    response=FleetDrift,
    errors=(404,),
)
def drift(env: str, model: str):
    """Merge every agent's drift sketch of the serving version exactly; compare with its profile."""
    store, version = _serving(env, model)
    since = parse_query(SinceQuery).since or utcnow() - DEFAULT_LOOKBACK
    reports = store.reports.query(
        environment=env, model=model, version=version, kind="drift", since=since, limit=10_000
    )
    profile = load_profile(store, model, version) if version is not None else None
    return fleet_drift(env, model, version, profile, reports).model_dump(mode="json")


@operation(
    bp,
    "/environments/<env>/shadow/<model>",
    roles=READERS,
    tag=TAG,
    query=SinceQuery,
    response=FleetShadow,
    errors=(404,),
)
def shadow(env: str, model: str):
    """Sum the agents' shadow comparisons of the current primary and shadow pair."""
    store, version = _serving(env, model)
    desired = store.environments.desired(env)
    shadow_version = desired.models[model].shadow if desired and model in desired.models else None
    since = parse_query(SinceQuery).since or utcnow() - DEFAULT_LOOKBACK
    reports = [
        report
        for report in store.reports.query(
            environment=env,
            model=model,
            version=version,
            kind="shadow",
            since=since,
            limit=10_000,
        )
        if report.shadow_version == shadow_version
    ]
    by_agent = defaultdict(list)
    for report in reports:
        by_agent[report.agent_id].append(report)
    view = FleetShadow(
        environment=env,
        model=model,
        version=version,
        shadow_version=shadow_version,
        fleet=shadow_totals(reports),
        agents={agent: shadow_totals(own) for agent, own in sorted(by_agent.items())},
    )
    return view.model_dump(mode="json")


def load_profile(store: Store, model: str, version: int) -> ReferenceProfile | None:
    """Read a version's reference profile from the artifact store, if it has one."""
    found = store.registry.get_version(model, version)
    if found is None or found.reference_profile is None:
        return None
    raw = state().artifacts.read_bytes(found.reference_profile.sha256)
    return ReferenceProfile.model_validate_json(raw)


def _serving(env: str, model: str) -> tuple[Store, int | None]:
    check_name(env, "environment name")
    check_name(model, "model name")
    store = get_store()
    desired = store.environments.desired(env)
    if desired is None:
        raise NotFound(f"environment {env!r} not found")
    if not store.registry.model_exists(model):
        raise NotFound(f"model {model!r} not found")
    entry = desired.models.get(model)
    return store, None if entry is None else entry.version
