"""Turn many agents' reports into fleet-wide drift and shadow figures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from common.drift import ReferenceProfile, WindowSketch, compare
from common.reports import AgentDrift, FleetDrift, ShadowTotals, StoredReport


def fleet_drift(
    environment: str,
    model: str,
    version: int | None,
    profile: ReferenceProfile | None,
    reports: list[StoredReport],
) -> FleetDrift:
    """Merge the drift sketches of `reports` exactly and compare them with the profile."""
    base = FleetDrift(environment=environment, model=model, version=version, windows=0, report=None)
    if version is None:
        return base.model_copy(update={"reason": f"{model} is not deployed in {environment}"})
    if profile is None:
        return base.model_copy(update={"reason": f"version {version} has no reference profile"})
    by_agent: dict[str, list[WindowSketch]] = defaultdict(list)
    for report in reports:
        if report.drift is not None and report.drift.sketch is not None:
            by_agent[report.agent_id].append(report.drift.sketch)
    sketches = [s for agent in by_agent.values() for s in agent]
    if not sketches:
        return base.model_copy(update={"reason": "no drift windows reported yet"})
    agents = {}
    for agent_id, own in sorted(by_agent.items()):
        merged = own[0].merge(*own[1:])
        verdict = compare(profile, merged)
        agents[agent_id] = AgentDrift(
            windows=len(own),
            rows=merged.rows,
            dataset_drift=verdict.dataset_drift,
            share_drifted=verdict.share_drifted,
        )
    fleet = sketches[0].merge(*sketches[1:])
    return base.model_copy(
        update={"windows": len(sketches), "report": compare(profile, fleet), "agents": agents}
    )


def shadow_totals(reports: Iterable[StoredReport]) -> ShadowTotals:
    """Sum the shadow comparisons of `reports`."""
    totals = ShadowTotals()
    agreed = diff_weight = diff_sum = 0.0
    compared_labels = 0
    primary_correct = shadow_correct = 0
    labelled_classifier = 0
    for report in reports:
        metrics = report.shadow
        if metrics is None:
            continue
        totals.windows += 1
        totals.requests += metrics.requests
        totals.shadowed += metrics.shadowed
        totals.dropped += metrics.dropped
        totals.shadow_errors += metrics.shadow_errors
        totals.labelled += metrics.labelled
        if metrics.agreed is not None or metrics.agreement is not None:
            agreed += (
                metrics.agreed
                if metrics.agreed is not None
                else (metrics.agreement or 0.0) * metrics.shadowed
            )
            compared_labels += metrics.shadowed
        diff = (
            metrics.mean_abs_diff
            if metrics.mean_abs_diff is not None
            else metrics.mean_abs_proba_diff
        )
        if diff is not None:
            diff_sum += diff * metrics.shadowed
            diff_weight += metrics.shadowed
        if metrics.primary_correct is not None and metrics.shadow_correct is not None:
            primary_correct += metrics.primary_correct
            shadow_correct += metrics.shadow_correct
            labelled_classifier += metrics.labelled
        # A quantile of merged windows is not derivable from quantiles; the worst window's p95
        # is a conservative bound for the promotion rule.
        totals.primary_p95_ms = _worst(totals.primary_p95_ms, metrics.primary_latency.p95)
        totals.shadow_p95_ms = _worst(totals.shadow_p95_ms, metrics.shadow_latency.p95)
    if compared_labels:
        totals.agreement = agreed / compared_labels
    if totals.shadowed:
        totals.error_rate = totals.shadow_errors / (totals.shadowed + totals.shadow_errors)
    if diff_weight:
        totals.mean_abs_diff = diff_sum / diff_weight
    if totals.primary_p95_ms and totals.shadow_p95_ms is not None:
        totals.latency_ratio = totals.shadow_p95_ms / totals.primary_p95_ms
    if labelled_classifier:
        totals.primary_accuracy = primary_correct / labelled_classifier
        totals.shadow_accuracy = shadow_correct / labelled_classifier
    return totals


def _worst(current: float | None, value: float | None) -> float | None:
    if value is None:
        return current
    return value if current is None else max(current, value)
