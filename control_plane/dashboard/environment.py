"""One environment's page: desired state and actions, agents, drift and shadow plots, history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from flask import abort, render_template, request
from markupsafe import Markup

from common.names import check_name
from common.schemas import HistoryEntry
from control_plane.context import get_store
from control_plane.dashboard.auth import page
from control_plane.dashboard.blueprint import bp
from control_plane.dashboard.figures import (
    Distribution,
    DriftHistory,
    FeatureSeries,
    FleetWindow,
    ShadowPoint,
    distribution,
    drift_history,
    shadow_history,
)
from control_plane.dashboard.pages import ModelRow, agent_rows, environment_view, is_automatic
from control_plane.dashboard.svg import Bars, Line, bar_chart, line_chart
from control_plane.store import Store

DEFAULT_HOURS = 24
DEFAULT_WINDOWS = 30


@dataclass
class ModelPanel:
    """Everything the page shows about one deployed model."""

    row: ModelRow
    previous: int | None
    drift: DriftHistory
    drift_charts: list[tuple[FeatureSeries, Markup]] = field(default_factory=list)
    window: FleetWindow | None = None
    feature: str | None = None
    bins: str = "deciles"
    distribution: Distribution | None = None
    distribution_chart: Markup | None = None
    shadow: list[ShadowPoint] = field(default_factory=list)
    shadow_charts: list[tuple[str, Markup]] = field(default_factory=list)


@bp.get("/environments/<env>")
@page
def environment(env: str):  # type: ignore[no-untyped-def]
    """Show one environment: desired state, fleet, drift and shadow over time, history."""
    check_name(env, "environment name")
    store = get_store()
    found = store.environments.get(env)
    if found is None:
        abort(404, f"There is no environment {env!r}.")
    view = environment_view(store, found)
    assert view is not None
    hours = _int_arg("hours", DEFAULT_HOURS, 1, 24 * 30)
    max_windows = _int_arg("windows", DEFAULT_WINDOWS, 1, 100)
    history = store.environments.history(env, limit=50)
    panels = [
        _panel(store, env, row, history, timedelta(hours=hours), max_windows) for row in view.rows
    ]
    return render_template(
        "environment.html",
        view=view,
        panels=panels,
        agents=agent_rows(store, env),
        history=history,
        events=store.events.list(environment=env, limit=50),
        models=[summary.name for summary in store.registry.list_models()],
        hours=hours,
        max_windows=max_windows,
        is_automatic=is_automatic,
    )


def previous_primary(history: list[HistoryEntry], model: str, current: int) -> int | None:
    """Return the version a rollback restores, as the store remembers it, from the audit log."""
    # Every change of primary remembers the primary it replaced; changes of shadow alone keep it.
    for entry in history:
        if entry.model != model or entry.after is None or entry.after.version != current:
            continue
        if entry.before is None:  # deployed afresh: nothing to go back to
            return None
        if entry.before.version != current:
            return entry.before.version
    return None


def _panel(
    store: Store,
    env: str,
    row: ModelRow,
    history: list[HistoryEntry],
    since: timedelta,
    max_windows: int,
) -> ModelPanel:
    drift = drift_history(store, env, row.model, row.entry.version, since, max_windows)
    panel = ModelPanel(row, previous_primary(history, row.model, row.entry.version), drift)
    panel.drift_charts = [(series, _drift_chart(series)) for series in drift.series]
    if drift.windows and drift.profile is not None:
        _choose_distribution(panel, drift)
    if row.entry.shadow is not None:
        panel.shadow = shadow_history(
            store, env, row.model, row.entry.version, row.entry.shadow, since, max_windows
        )
        panel.shadow_charts = _shadow_charts(panel.shadow, row.entry.version, row.entry.shadow)
    return panel


def _choose_distribution(panel: ModelPanel, drift: DriftHistory) -> None:
    assert drift.profile is not None
    mine = request.args.get("model") == panel.row.model
    names = [series.name for series in drift.series]
    # By default the first drifted feature of the newest window, else the first feature.
    wanted = request.args.get("feature") if mine else None
    drifted = [series.name for series in drift.series if series.drifted_now]
    panel.feature = wanted if wanted in names else (drifted or names)[0]
    index = _int_arg("window", 0, 0, len(drift.windows) - 1) if mine else 0
    panel.window = next((w for w in drift.windows if w.index == index), drift.windows[0])
    panel.bins = "fine" if mine and request.args.get("bins") == "fine" else "deciles"
    panel.distribution = distribution(drift.profile, panel.window.sketch, panel.feature, panel.bins)
    if panel.distribution is not None:
        window = panel.window
        panel.distribution_chart = bar_chart(
            panel.distribution.labels,
            [
                Bars("reference", "reference", panel.distribution.reference),
                Bars(f"window {window.end:%H:%M}", "current", panel.distribution.current),
            ],
            title=f"{panel.feature}: reference vs window ending {window.end:%Y-%m-%d %H:%M} UTC",
        )


def _drift_chart(series: FeatureSeries) -> Markup:
    direction = "below" if series.pvalue else "above"
    y_range = None
    if not series.pvalue:  # distances start at 0
        scores = [p.score for p in series.points if p.score is not None and math.isfinite(p.score)]
        y_range = (0.0, max([*scores, series.threshold]) * 1.15)
    return line_chart(
        [
            Line(
                series.test,
                "drift",
                [(point.at, point.score) for point in series.points],
                [point.drifted for point in series.points],
            )
        ],
        title=(f"{series.name}: {series.test} per window; drift {direction} {series.threshold:g}"),
        threshold=series.threshold,
        log=series.pvalue,
        y_range=y_range,
        width=300,
        height=120,
    )


def _shadow_charts(
    points: list[ShadowPoint], version: int, shadow: int
) -> list[tuple[str, Markup]]:
    agreement = [(point.at, point.totals.agreement) for point in points]
    low = min((value for _, value in agreement if value is not None), default=0.9)
    latency = [
        Line(f"primary v{version}", "primary", [(p.at, p.totals.primary_p95_ms) for p in points]),
        Line(f"shadow v{shadow}", "shadow", [(p.at, p.totals.shadow_p95_ms) for p in points]),
    ]
    return [
        (
            f"Agreement of v{shadow} with v{version}",
            line_chart(
                [Line("agreement", "agreement", agreement)],
                title=f"Share of requests where shadow v{shadow} agrees with primary v{version}",
                y_range=(min(low - 0.01, 0.9), 1.0),
                width=620,
                height=170,
            ),
        ),
        (
            "p95 latency, ms",
            line_chart(
                latency,
                title=f"p95 latency of primary v{version} and shadow v{shadow} per window",
                unit=" ms",
                width=620,
                height=170,
            ),
        ),
    ]


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        return default
    return min(max(value, low), high)
