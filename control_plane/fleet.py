"""Compare each agent's reported state with the desired state."""

from __future__ import annotations

from datetime import datetime, timedelta

from common.schemas import (
    ActualModel,
    AgentInfo,
    AgentModelStatus,
    AgentStatus,
    DesiredModel,
    DesiredState,
    EnvironmentStatus,
    ModelStatus,
)


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
