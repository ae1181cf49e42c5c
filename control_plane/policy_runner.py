"""Run every environment's policy: gather the fleet's figures, decide, act once.

Each action is recorded as an event with a dedupe key in the same transaction as the action, so
running the engine twice (or in two processes) never acts twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from common.clock import utcnow
from common.drift import ReferenceProfile, compare
from common.policy import DriftPolicy, Policy, PromotePolicy, RollbackPolicy
from common.reports import StoredReport
from common.schemas import DesiredModel
from control_plane import desired as decide
from control_plane.artifacts import ArtifactStore
from control_plane.fleet_reports import shadow_totals
from control_plane.policies import decide_promotion, decide_rollback, drift_streak
from control_plane.store import Store
from control_plane.store.db import write_transaction
from control_plane.store.errors import StoreError

log = logging.getLogger("tether.policy")
DRIFT_LOOKBACK = timedelta(hours=24)
MAX_DRIFT_WINDOWS = 100


def run_policies(store: Store, artifacts: ArtifactStore, now: datetime | None = None) -> list[int]:
    """Evaluate every environment's policy once; return the ids of the events raised."""
    now = now or utcnow()
    raised: list[int] = []
    for environment in store.environments.list():
        policy = Policy.model_validate(store.environments.policy(environment.name) or {})
        if policy == Policy():
            continue
        desired = store.environments.desired(environment.name)
        for model, entry in (desired.models if desired else {}).items():
            try:
                if policy.rollback is not None:
                    raised += _rollback(store, environment.name, model, entry, policy.rollback, now)
                    after = store.environments.desired(environment.name)
                    entry = after.models.get(model, entry) if after else entry
                if policy.promote is not None and entry.shadow is not None:
                    raised += _promote(store, environment.name, model, entry, policy.promote)
                if policy.drift is not None:
                    raised += _drift(
                        store, artifacts, environment.name, model, entry, policy.drift, now
                    )
            except StoreError as error:  # the state moved under us; the next run sees it
                log.warning("policy for %s/%s skipped: %s", environment.name, model, error)
    return raised


def _promote(
    store: Store, env: str, model: str, entry: DesiredModel, policy: PromotePolicy
) -> list[int]:
    if entry.shadow in store.events.blocked(env, model):
        return []
    change = store.environments.last_change(env, model)
    since = change.at if change else None
    reports = [
        report
        for report in store.reports.query(
            environment=env,
            model=model,
            version=entry.version,
            kind="shadow",
            since=since,
            limit=100_000,
        )
        if report.shadow_version == entry.shadow
    ]
    decision = decide_promotion(policy, shadow_totals(reports))
    if not decision.fire:
        return []
    revision = change.revision if change else 0
    kind = "promotion" if policy.auto else "ready_to_promote"
    message = (
        f"{'promoted' if policy.auto else 'ready to promote'} v{entry.shadow}: {decision.explain()}"
    )
    with write_transaction(store.db):
        event = store.events.record(
            kind,
            env,
            model,
            message,
            version=entry.shadow,
            details={"figures": decision.figures, "from_version": entry.version},
            dedupe_key=f"{kind}:{env}:{model}:{entry.version}->{entry.shadow}@{revision}",
        )
        if event is None:
            return []
        if policy.auto:
            store.environments.change(
                env,
                model,
                decide.promote,
                action="promote",
                actor="policy:promote",
                reason=f"automatic: {decision.explain()} (event {event})",
            )
    log.info("%s/%s: %s", env, model, message)
    return [event]


def _rollback(
    store: Store, env: str, model: str, entry: DesiredModel, policy: RollbackPolicy, now: datetime
) -> list[int]:
    decision = decide_rollback(policy, model, entry, store.agents.list(env), now)
    if not decision.fire:
        return []
    change = store.environments.last_change(env, model)
    revision = change.revision if change else 0
    message = f"rolled back from v{entry.version}: {decision.explain()}"
    with write_transaction(store.db):
        event = store.events.record(
            "rollback",
            env,
            model,
            message,
            version=entry.version,
            details={"figures": decision.figures},
            dedupe_key=f"rollback:{env}:{model}:{entry.version}@{revision}",
        )
        if event is None:
            return []
        store.environments.change(
            env,
            model,
            decide.rollback,
            action="rollback",
            actor="policy:rollback",
            reason=f"automatic: {decision.explain()} (event {event})",
        )
        store.events.block(env, model, entry.version, decision.explain())
    log.warning("%s/%s: %s", env, model, message)
    return [event]


def _drift(
    store: Store,
    artifacts: ArtifactStore,
    env: str,
    model: str,
    entry: DesiredModel,
    policy: DriftPolicy,
    now: datetime,
) -> list[int]:
    version = store.registry.get_version(model, entry.version)
    if version is None or version.reference_profile is None:
        return []
    profile = ReferenceProfile.model_validate_json(
        artifacts.read_bytes(version.reference_profile.sha256)
    )
    reports = store.reports.query(
        environment=env,
        model=model,
        version=entry.version,
        kind="drift",
        since=now - DRIFT_LOOKBACK,
        limit=100_000,
    )
    windows = fleet_windows(reports)
    verdicts, newest = [], None
    for index, window in enumerate(windows[:MAX_DRIFT_WINDOWS]):
        sketches = [r.drift.sketch for r in window if r.drift and r.drift.sketch]
        if not sketches:
            verdicts.append(False)
            continue
        report = compare(profile, sketches[0].merge(*sketches[1:]))
        if index == 0:
            newest = report
        verdicts.append(report.dataset_drift)
        if not report.dataset_drift:
            break
    # One alert per drift episode, which ends when the fleet's newest window is clean again. Not
    # named by the reports of the streak: those change with every report that comes in (fleet
    # windows align each agent's k-th newest), which would raise the alert again and again.
    episode = store.events.count("drift_resolved", env, model, entry.version)
    alert_key = f"drift:{env}:{model}:{entry.version}:{episode}"
    if verdicts and not verdicts[0]:
        return _drift_resolved(store, env, model, entry.version, episode, alert_key)
    streak = drift_streak(verdicts)
    if streak < policy.consecutive or newest is None:
        return []
    drifted = {
        name: {
            "test": f.test,
            "score": f.score,
            "threshold": f.threshold,
            "psi": f.psi,
            "wasserstein": f.wasserstein,
            "jensen_shannon": f.jensen_shannon,
        }
        for name, f in newest.features.items()
        if f.drifted
    }
    message = (
        f"dataset drift on v{entry.version} for {streak} consecutive windows: "
        f"{newest.n_drifted} of {newest.n_features} features drifted"
    )
    with write_transaction(store.db):
        event = store.events.record(
            "drift_alert",
            env,
            model,
            message,
            version=entry.version,
            details={
                "drifted_features": drifted,
                "share_drifted": newest.share_drifted,
                "windows": streak,
                "window_rows": newest.window_rows,
            },
            dedupe_key=alert_key,
        )
        if event is None:
            return []
        for hook in policy.webhooks:
            store.events.add_delivery(event, str(hook.url))
    log.warning("%s/%s: %s", env, model, message)
    return [event]


def _drift_resolved(
    store: Store, env: str, model: str, version: int, episode: int, alert_key: str
) -> list[int]:
    """End the drift episode whose alert was raised, with an event saying so (once)."""
    if not store.events.seen(alert_key):
        return []  # no alert of this episode: nothing to resolve
    with write_transaction(store.db):
        event = store.events.record(
            "drift_resolved",
            env,
            model,
            f"drift on v{version} resolved: the fleet's newest window no longer drifts",
            version=version,
            dedupe_key=f"drift-resolved:{env}:{model}:{version}:{episode}",
        )
    if event is None:
        return []
    log.info("%s/%s: drift on v%d resolved", env, model, version)
    return [event]


def fleet_windows(reports: list[StoredReport]) -> list[list[StoredReport]]:
    """Align agents' windows by recency: fleet window k holds each agent's k-th newest report."""
    by_agent: dict[str, list[StoredReport]] = defaultdict(list)
    for report in reports:
        by_agent[report.agent_id].append(report)
    newest_first = [
        sorted(own, key=lambda r: r.window_end, reverse=True) for own in by_agent.values()
    ]
    depth = max((len(own) for own in newest_first), default=0)
    return [[own[k] for own in newest_first if k < len(own)] for k in range(depth)]
