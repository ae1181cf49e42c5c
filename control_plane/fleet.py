"""Compare each agent's reported state with the desired state, one page of a fleet at a time.

An environment of ten thousand agents is classified from its stored rows alone (`state_rule`:
a dict lookup per model, no objects built), counted by state, sorted with the agents that need a
look first, and only the page asked for is built in full (`agent_status`). `state_rule` and
`agent_state(agent_status(...))` are held to one answer by tests/control_plane/test_fleet_pages.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from common.schemas import (
    AGENT_STATES,
    ActualModel,
    AgentInfo,
    AgentModelStatus,
    AgentState,
    AgentStatus,
    DesiredModel,
    DesiredState,
    EnvironmentStatus,
    ModelStatus,
    StateCounts,
)
from control_plane.store.agents import AgentFacts


def model_converged(desired: DesiredModel | None, actual: ActualModel | None) -> bool:
    """Tell whether an agent serves exactly what is desired for one model."""
    if desired is None:
        return actual is None or actual.serving is None
    return (
        actual is not None
        and actual.status is ModelStatus.ok
        and actual.serving == desired.version
        and actual.shadow == desired.shadow
    )


def agent_status(
    agent: AgentInfo, desired: DesiredState, now: datetime, stale_after: int
) -> AgentStatus:
    """Summarise one agent against the desired state."""
    names = sorted(set(desired.models) | set(agent.models))
    models = {
        name: AgentModelStatus(
            desired=desired.models.get(name),
            actual=agent.models.get(name),
            converged=model_converged(desired.models.get(name), agent.models.get(name)),
        )
        for name in names
    }
    # An offline agent is only ever heard from through imported report exports.
    heard = max(filter(None, (agent.last_seen, agent.last_import)), default=None)
    stale = heard is None or now - heard > timedelta(seconds=stale_after)
    return AgentStatus(
        agent_id=agent.id,
        hostname=agent.hostname,
        last_seen=agent.last_seen,
        last_import=agent.last_import,
        stale=stale,
        applied_revision=agent.applied_revision,
        converged=all(model.converged for model in models.values()),
        models=models,
    )


def environment_status(
    desired: DesiredState, agents: list[AgentInfo], now: datetime, stale_after: int
) -> EnvironmentStatus:
    """Summarise every agent of an environment."""
    statuses = [agent_status(agent, desired, now, stale_after) for agent in agents]
    return EnvironmentStatus(
        environment=desired.environment,
        revision=desired.revision,
        agents=statuses,
        converged=sum(status.converged for status in statuses),
        total=len(statuses),
    )


OK, FAILED = ModelStatus.ok.value, ModelStatus.failed.value


def state_rule(
    desired: DesiredState, now: datetime, stale_after: int
) -> Callable[[AgentFacts], AgentState]:
    """Return a function naming an agent's state from its facts alone, as
    `agent_state(agent_status(...))` would: built once per page, called per agent."""
    wanted = {name: (entry.version, entry.shadow) for name, entry in desired.models.items()}
    heard_after = now - timedelta(seconds=stale_after)

    def state_of(facts: AgentFacts) -> AgentState:
        if facts.heard is None or facts.heard < heard_after:
            return "stale"
        models = facts.models
        lagging = False
        for name, have in models.items():
            status = have.get("status", OK)
            if status == FAILED:
                return "failed"
            want = wanted.get(name)
            if want is None:
                lagging = lagging or have.get("serving") is not None
            else:
                lagging = (
                    lagging or status != OK or want != (have.get("serving"), have.get("shadow"))
                )
        if lagging or any(name not in models for name in wanted):
            return "lagging"
        return "converged"

    return state_of


def agent_states(
    desired: DesiredState, facts: Sequence[AgentFacts], now: datetime, stale_after: int
) -> dict[str, AgentState]:
    """Name every agent's state, by id."""
    state_of = state_rule(desired, now, stale_after)
    return {fact.agent_id: state_of(fact) for fact in facts}


def count_states(states: Iterable[AgentState]) -> StateCounts:
    tally = dict.fromkeys(AGENT_STATES, 0)
    for state in states:
        tally[state] += 1
    return StateCounts(**tally)


def fleet_page(
    desired: DesiredState,
    facts: Sequence[AgentFacts],
    load: Callable[[list[str]], list[AgentInfo]],
    *,
    now: datetime,
    stale_after: int,
    state: AgentState | None = None,
    offset: int = 0,
    limit: int = 100,
) -> EnvironmentStatus:
    """Count every agent by state and build one page of them, the ones that need a look first.

    `load` fetches the full records of the page's agents, by id.
    """
    states = agent_states(desired, facts, now, stale_after)
    counts = count_states(states.values())
    rank = {name: index for index, name in enumerate(AGENT_STATES)}
    ordered = sorted(
        (agent_id for agent_id, found in states.items() if state is None or found == state),
        key=lambda agent_id: (rank[states[agent_id]], agent_id),
    )
    page_ids = ordered[offset : offset + limit]
    agents = {agent.id: agent for agent in load(page_ids)}
    page = [agent_status(agents[i], desired, now, stale_after) for i in page_ids if i in agents]
    return EnvironmentStatus(
        environment=desired.environment,
        revision=desired.revision,
        agents=page,
        converged=counts.converged,
        total=len(states),
        counts=counts,
        state=state,
        offset=offset,
        next_offset=offset + limit if offset + limit < len(ordered) else None,
    )
