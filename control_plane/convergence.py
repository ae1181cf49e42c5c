"""Sort agents into converged, lagging, failed or stale, per environment and per model.

Shared by the dashboard and /metrics, so both count the fleet the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.schemas import AgentModelStatus, AgentStatus, EnvironmentStatus, ModelStatus

STATES = ("converged", "lagging", "failed", "stale")


@dataclass
class Convergence:
    """How many agents are in each state."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def share(self) -> float | None:
        """Return the converged share, None without agents."""
        return self.counts["converged"] / self.total if self.total else None

    def add(self, state: str) -> None:
        self.counts[state] += 1


def agent_state(status: AgentStatus) -> str:
    """Name an agent's state: stale first (its figures are old), then failed, then converged."""
    if status.stale:
        return "stale"
    if any(_failed(model) for model in status.models.values()):
        return "failed"
    return "converged" if status.converged else "lagging"


def model_state(status: AgentStatus, model: str) -> str:
    """Name an agent's state for one model."""
    entry = status.models.get(model)
    if status.stale:
        return "stale"
    if entry is not None and _failed(entry):
        return "failed"
    return "converged" if entry is None or entry.converged else "lagging"


def environment_convergence(status: EnvironmentStatus) -> Convergence:
    """Count an environment's agents by state."""
    tally = Convergence()
    for agent in status.agents:
        tally.add(agent_state(agent))
    return tally


def model_convergence(status: EnvironmentStatus, model: str) -> Convergence:
    """Count an environment's agents by their state for one model."""
    tally = Convergence()
    for agent in status.agents:
        tally.add(model_state(agent, model))
    return tally


def _failed(model: AgentModelStatus) -> bool:
    return model.actual is not None and model.actual.status is ModelStatus.failed
