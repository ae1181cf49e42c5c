"""The list pages: overview, environments, agents, models, events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from flask import render_template, request

from common.clock import utcnow
from common.policy import EVENT_KINDS
from common.reports import ShadowTotals
from common.schemas import (
    AgentInfo,
    AgentStatus,
    DesiredModel,
    DesiredState,
    Environment,
    EnvironmentStatus,
    HistoryEntry,
    ModelVersion,
)
from control_plane.context import get_store, settings
from control_plane.convergence import (
    Convergence,
    agent_state,
    environment_convergence,
    model_convergence,
)
from control_plane.dashboard.auth import page
from control_plane.dashboard.blueprint import bp
from control_plane.dashboard.figures import Verdict, shadow_now, verdict
from control_plane.fleet import environment_status
from control_plane.store import Store

AUTOMATIC_PREFIX = "policy:"


@dataclass
class ModelRow:
    """One model of an environment: what is desired, how the fleet follows, how it fares."""

    model: str
    entry: DesiredModel
    convergence: Convergence
    verdict: Verdict
    shadow: ShadowTotals | None


@dataclass
class EnvironmentView:
    environment: Environment
    desired: DesiredState
    status: EnvironmentStatus
    convergence: Convergence
    rows: list[ModelRow]


@dataclass
class AgentRow:
    agent: AgentInfo
    status: AgentStatus
    state: str
    desired_revision: int

    @property
    def errors(self) -> list[str]:
        return [
            f"{name}: {model.stage + ': ' if model.stage else ''}{model.error}"
            for name, model in self.agent.models.items()
            if model.error
        ]


def environment_view(store: Store, environment: Environment) -> EnvironmentView | None:
    """Gather one environment's desired state, convergence, drift verdicts and agreement."""
    desired = store.environments.desired(environment.name)
    if desired is None:
        return None
    status = environment_status(
        desired, store.agents.list(environment.name), utcnow(), settings().stale_after
    )
    rows = [
        ModelRow(
            model=model,
            entry=entry,
            convergence=model_convergence(status, model),
            verdict=verdict(store, environment.name, model, entry.version),
            shadow=None
            if entry.shadow is None
            else shadow_now(store, environment.name, model, entry.version, entry.shadow),
        )
        for model, entry in desired.models.items()
    ]
    return EnvironmentView(environment, desired, status, environment_convergence(status), rows)


def is_automatic(entry: HistoryEntry) -> bool:
    """Tell whether the policy engine, not a person, made a change."""
    return entry.actor.startswith(AUTOMATIC_PREFIX)


def agent_rows(store: Store, environment: str | None = None) -> list[AgentRow]:
    """Return every agent (of one environment, or all) with its state against the desired."""
    now, stale_after = utcnow(), settings().stale_after
    desired = {
        env.name: state
        for env in store.environments.list()
        if (environment is None or env.name == environment)
        and (state := store.environments.desired(env.name)) is not None
    }
    rows = []
    for agent in store.agents.list(environment):
        wanted = desired.get(agent.environment)
        if wanted is None:
            continue
        status = environment_status(wanted, [agent], now, stale_after).agents[0]
        rows.append(AgentRow(agent, status, agent_state(status), wanted.revision))
    return rows


def recent_history(store: Store, limit: int) -> list[HistoryEntry]:
    """Return the newest desired-state changes across every environment."""
    entries: list[HistoryEntry] = []
    for env in store.environments.list():
        # cast: EnvironmentStore's own `list` method shadows the builtin in its annotations.
        entries += cast(list[HistoryEntry], store.environments.history(env.name, limit=limit))
    return sorted(entries, key=lambda entry: entry.at, reverse=True)[:limit]


@bp.get("/")
@page
def overview():  # type: ignore[no-untyped-def]
    """Show the fleet at a glance: environments, agents by state, recent changes and events."""
    store = get_store()
    views = [v for env in store.environments.list() if (v := environment_view(store, env))]
    fleet = Convergence()
    for view in views:
        for state, count in view.convergence.counts.items():
            fleet.counts[state] += count
    return render_template(
        "overview.html",
        views=views,
        fleet=fleet,
        models=store.registry.list_models(),
        history=recent_history(store, 8),
        events=store.events.list(limit=8),
        events_today=len(store.events.list(since=utcnow() - timedelta(days=1), limit=10_000)),
        is_automatic=is_automatic,
    )


@bp.get("/environments")
@page
def environments():  # type: ignore[no-untyped-def]
    """List environments, each model's desired state, convergence, drift and agreement."""
    store = get_store()
    views = [v for env in store.environments.list() if (v := environment_view(store, env))]
    return render_template("environments.html", views=views)


@bp.get("/agents")
@page
def agents():  # type: ignore[no-untyped-def]
    """List agents: actual state, last contact, labels, errors; stale ones stand out."""
    store = get_store()
    environment = request.args.get("environment") or None
    rows = agent_rows(store, environment)
    order = {"failed": 0, "stale": 1, "lagging": 2, "converged": 3}
    rows.sort(key=lambda row: (order[row.state], row.agent.environment, row.agent.hostname))
    return render_template(
        "agents.html",
        rows=rows,
        environment=environment,
        environments=[env.name for env in store.environments.list()],
        stale_after=settings().stale_after,
    )


@bp.get("/models")
@page
def models():  # type: ignore[no-untyped-def]
    """List models and versions with metadata, lineage and where each is deployed."""
    store = get_store()
    deployed: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for env in store.environments.list():
        state = store.environments.desired(env.name)
        for model, entry in (state.models if state else {}).items():
            deployed.setdefault((model, entry.version), []).append((env.name, "primary"))
            if entry.shadow is not None:
                deployed.setdefault((model, entry.shadow), []).append((env.name, "shadow"))
    catalogue: list[tuple[str, list[ModelVersion]]] = [
        (summary.name, list(reversed(store.registry.list_versions(summary.name))))
        for summary in store.registry.list_models()
    ]
    return render_template("models.html", catalogue=catalogue, deployed=deployed)


@bp.get("/events")
@page
def events():  # type: ignore[no-untyped-def]
    """List the policy engine's events and the audit log of changes, automatic ones marked."""
    store = get_store()
    environment = request.args.get("environment") or None
    kind = request.args.get("kind") or None
    names = [env.name for env in store.environments.list()]
    if environment is not None and environment not in names:
        environment = None
    history = (
        store.environments.history(environment, limit=100)
        if environment
        else recent_history(store, 100)
    )
    return render_template(
        "events.html",
        events=store.events.list(environment=environment, kind=kind, limit=200),
        history=history,
        environment=environment,
        kind=kind,
        environments=names,
        kinds=list(EVENT_KINDS),
        is_automatic=is_automatic,
    )
