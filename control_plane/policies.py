"""Decide, from the fleet's reports, when to promote, roll back or raise a drift alert.

Pure functions of figures: the runner (policy_runner.py) gathers the figures and acts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from common.policy import PromotePolicy, RollbackPolicy
from common.reports import ShadowTotals
from common.schemas import AgentInfo, DesiredModel, ModelStatus


@dataclass(frozen=True)
class Decision:
    """Whether a rule fires, why, and the figures it looked at."""

    fire: bool
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def explain(self) -> str:
        return "; ".join(self.reasons)


def decide_promotion(policy: PromotePolicy, totals: ShadowTotals) -> Decision:
    """Promote when the shadow saw enough requests and agrees, is fast and does not fail."""
    figures = totals.model_dump()
    if totals.shadowed < policy.min_samples:
        return Decision(False, [f"{totals.shadowed} of {policy.min_samples} samples"], figures)
    reasons = []
    if totals.primary_accuracy is not None and totals.shadow_accuracy is not None:
        floor = totals.primary_accuracy - policy.accuracy_margin
        if totals.shadow_accuracy < floor:
            return Decision(
                False, [f"shadow accuracy {totals.shadow_accuracy:.4f} < {floor:.4f}"], figures
            )
        reasons.append(
            f"shadow accuracy {totals.shadow_accuracy:.4f} >= primary {totals.primary_accuracy:.4f}"
            f" - {policy.accuracy_margin}"
        )
    elif totals.agreement is not None:
        if totals.agreement < policy.min_agreement:
            return Decision(
                False, [f"agreement {totals.agreement:.4f} < {policy.min_agreement}"], figures
            )
        reasons.append(f"agreement {totals.agreement:.4f} >= {policy.min_agreement}")
    else:
        return Decision(False, ["no agreement or accuracy figure yet"], figures)
    if totals.latency_ratio is not None:
        if totals.latency_ratio > policy.max_latency_ratio:
            return Decision(
                False,
                [f"latency ratio {totals.latency_ratio:.2f} > {policy.max_latency_ratio}"],
                figures,
            )
        reasons.append(
            f"p95 latency ratio {totals.latency_ratio:.2f} <= {policy.max_latency_ratio}"
        )
    error_rate = totals.error_rate or 0.0
    if error_rate > policy.max_error_rate:
        return Decision(False, [f"error rate {error_rate:.4f} > {policy.max_error_rate}"], figures)
    reasons.append(f"error rate {error_rate:.4f} <= {policy.max_error_rate}")
    reasons.append(f"{totals.shadowed} samples >= {policy.min_samples}")
    return Decision(True, reasons, figures)


def decide_rollback(
    policy: RollbackPolicy,
    model: str,
    desired: DesiredModel,
    agents: list[AgentInfo],
    now: datetime,
) -> Decision:
    """Roll back when enough of the agents heard from recently failed to apply the primary."""
    recent = [
        agent
        for agent in agents
        if agent.last_seen is not None
        and now - agent.last_seen <= timedelta(seconds=policy.window_seconds)
    ]
    failed = [
        agent.id
        for agent in recent
        if (actual := agent.models.get(model)) is not None
        and actual.status is ModelStatus.failed
        and actual.target == desired.version
    ]
    share = len(failed) / len(recent) if recent else 0.0
    figures = {
        "version": desired.version,
        "failed_agents": failed,
        "recent_agents": len(recent),
        "failure_share": share,
        "errors": {agent.id: agent.models[model].error for agent in recent if agent.id in failed},
    }
    if not failed or share < policy.failure_share:
        return Decision(False, [f"{len(failed)} of {len(recent)} agents failed"], figures)
    return Decision(
        True,
        [
            f"{len(failed)} of {len(recent)} agents ({share:.0%}) failed to apply"
            f" v{desired.version} within {policy.window_seconds} s"
            f" (threshold {policy.failure_share:.0%})"
        ],
        figures,
    )


def drift_streak(verdicts: list[bool]) -> int:
    """Count the newest-first run of drifted windows."""
    streak = 0
    for drifted in verdicts:
        if not drifted:
            break
        streak += 1
    return streak
