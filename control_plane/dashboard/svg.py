"""Draw the dashboard's plots as inline SVG, on the server: no JavaScript, nothing fetched.

Every text that reaches the SVG is escaped; colours come from classes in dashboard.css.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from markupsafe import Markup, escape

LOG_FLOOR = 1e-12  # p-values below this plot at the floor


@dataclass
class Line:
    """One series of a line chart; `marks` flags points to highlight (e.g. drifted windows)."""

    label: str
    css: str
    points: list[tuple[datetime, float | None]]
    marks: list[bool] = field(default_factory=list)


@dataclass
class Bars:
    """One series of a bar chart."""

    label: str
    css: str
    values: list[float]


@dataclass
class _Frame:
    width: int
    height: int
    left: int = 44
    right: int = 10
    top: int = 10
    bottom: int = 20

    @property
    def inner_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> float:
        return self.height - self.top - self.bottom


def line_chart(
    lines: Sequence[Line],
    *,
    title: str,
    threshold: float | None = None,
    log: bool = False,
    unit: str = "",
    y_range: tuple[float, float] | None = None,
    width: int = 300,
    height: int = 130,
) -> Markup:
    """Plot series over time, with an optional dashed threshold; log scale for p-values."""
    frame = _Frame(width, height)
    # An infinite or missing figure leaves a gap; it has no place on the axis.
    lines = [
        Line(line.label, line.css, [(at, _finite(v)) for at, v in line.points], line.marks)
        for line in lines
    ]
    points = [(at, value) for line in lines for at, value in line.points if value is not None]
    if not points:
        return _empty(frame, title)

    def scale(value: float) -> float:
        return math.log10(max(value, LOG_FLOOR)) if log else value

    ys = [scale(value) for _, value in points]
    if threshold is not None:
        ys.append(scale(threshold))
    if y_range is not None:
        low, high = scale(y_range[0]), scale(y_range[1])
    elif log:
        # p-values: 1 at the top, whole decades down to below the smallest point.
        low, high = math.floor(min(min(ys), -2.0)), 0.0
    else:
        low, high = _pad(min(ys), max(ys))
    ticks = _log_ticks(low, high) if log else _nice_ticks(low, high)
    times = [at.timestamp() for at, _ in points]
    start, end = min(times), max(times)
    if end == start:
        start, end = start - 60, end + 60

    def x(at: datetime) -> float:
        return frame.left + (at.timestamp() - start) / (end - start) * frame.inner_width

    def y(value: float) -> float:
        ratio = (scale(value) - low) / (high - low)
        return frame.top + (1 - min(max(ratio, 0.0), 1.0)) * frame.inner_height

    parts = [_axes(frame)]
    for tick in ticks:
        label = _format(10**tick, log) if log else _format(tick, log)
        parts.append(_grid(frame, frame.top + (high - tick) / (high - low) * frame.inner_height))
        parts.append(
            _y_label(
                frame, frame.top + (high - tick) / (high - low) * frame.inner_height, label + unit
            )
        )
    parts += _x_labels(frame, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    if threshold is not None:
        ty = y(threshold)
        parts.append(
            f'<line class="threshold" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{ty:.1f}" y2="{ty:.1f}"><title>threshold {_format(threshold, log)}</title></line>'
        )
    count = 0
    for line in lines:
        path: list[list[str]] = []
        segment: list[str] = []
        for at, value in line.points:
            if value is None:
                path.append(segment)
                segment = []
                continue
            segment.append(f"{x(at):.1f},{y(value):.1f}")
        path.append(segment)
        for piece in path:
            if len(piece) > 1:
                parts.append(f'<polyline class="line {line.css}" points="{" ".join(piece)}"/>')
        for index, (at, value) in enumerate(line.points):
            if value is None:
                continue
            count += 1
            marked = index < len(line.marks) and line.marks[index]
            tip = escape(f"{at:%Y-%m-%d %H:%M} {line.label}: {_format(value, log)}{unit}")
            parts.append(
                f'<circle class="pt {line.css}{" marked" if marked else ""}" cx="{x(at):.1f}" '
                f'cy="{y(value):.1f}" r="{3.2 if marked else 2.2}"><title>{tip}</title></circle>'
            )
    if len(lines) > 1:
        parts.append(_legend(frame, [(line.label, line.css) for line in lines]))
    return _svg(frame, title, parts, count)


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Bars],
    *,
    title: str,
    width: int = 760,
    height: int = 230,
    percent: bool = True,
) -> Markup:
    """Draw grouped bars, one group per label (shares as percentages by default)."""
    frame = _Frame(width, height, bottom=64)
    peak = max((value for bars in series for value in bars.values), default=0.0)
    if not labels or peak <= 0:
        return _empty(frame, title)
    ticks = _nice_ticks(0.0, peak, cover=True)
    top = ticks[-1]
    slot = frame.inner_width / len(labels)
    bar = slot * 0.8 / max(len(series), 1)
    parts = [_axes(frame)]
    for tick in ticks:
        label = f"{tick * 100:.0f}%" if percent else _format(tick)
        ty = frame.top + (1 - tick / top) * frame.inner_height
        parts += [_grid(frame, ty), _y_label(frame, ty, label)]
    count = 0
    for index, name in enumerate(labels):
        left = frame.left + index * slot + slot * 0.1
        for offset, bars in enumerate(series):
            value = bars.values[index]
            h = value / top * frame.inner_height
            shown = f"{value * 100:.1f}%" if percent else _format(value, False)
            tip = escape(f"{name} · {bars.label}: {shown}")
            parts.append(
                f'<rect class="bar {bars.css}" x="{left + offset * bar:.1f}" '
                f'y="{frame.top + frame.inner_height - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{h:.1f}"><title>{tip}</title></rect>'
            )
            count += 1
        # Label every bar group while they fit, else every k-th.
        every = max(1, math.ceil(len(labels) / 14))
        if index % every == 0:
            cx = frame.left + (index + 0.5) * slot
            cy = frame.height - frame.bottom + 8
            parts.append(
                f'<text class="tick" text-anchor="end" transform="translate({cx:.1f},{cy}) '
                f'rotate(-40)">{escape(name)}</text>'
            )
    parts.append(_legend(frame, [(bars.label, bars.css) for bars in series]))
    return _svg(frame, title, parts, count)


def _svg(frame: _Frame, title: str, parts: list[str], count: int) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" width="{frame.width}" '
        f'height="{frame.height}" role="img" aria-label="{escape(title)}" data-points="{count}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def _empty(frame: _Frame, title: str) -> Markup:
    return _svg(
        frame,
        title,
        [
            _axes(frame),
            f'<text class="empty" x="{frame.width / 2:.0f}" y="{frame.height / 2:.0f}" '
            'text-anchor="middle">no data yet</text>',
        ],
        0,
    )


def _axes(frame: _Frame) -> str:
    bottom = frame.height - frame.bottom
    return (
        f'<rect class="plot" x="{frame.left}" y="{frame.top}" width="{frame.inner_width:.0f}" '
        f'height="{frame.inner_height:.0f}"/>'
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" y1="{bottom}" '
        f'y2="{bottom}"/>'
    )


def _y_label(frame: _Frame, y: float, text: str) -> str:
    return (
        f'<text class="tick" x="{frame.left - 4}" y="{y + 3:.1f}" text-anchor="end">'
        f"{escape(text)}</text>"
    )


def _x_labels(frame: _Frame, start: datetime, end: datetime) -> list[str]:
    shape = "%H:%M" if (end - start).total_seconds() < 86400 else "%m-%d %H:%M"
    y = frame.height - 6
    return [
        f'<text class="tick" x="{frame.left}" y="{y}" text-anchor="start">{start:{shape}}</text>',
        f'<text class="tick" x="{frame.width - frame.right}" y="{y}" text-anchor="end">'
        f"{end:{shape}}</text>",
    ]


def _legend(frame: _Frame, entries: list[tuple[str, str]]) -> str:
    parts, x = [], frame.left + 6
    for label, css in entries:
        parts.append(
            f'<rect class="swatch {css}" x="{x}" y="{frame.top + 4}" width="9" height="9"/>'
            f'<text class="legend" x="{x + 12}" y="{frame.top + 12}">{escape(label)}</text>'
        )
        x += 20 + 6 * len(label)
    return "".join(parts)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _pad(low: float, high: float) -> tuple[float, float]:
    if high - low < 1e-9:
        spread = max(abs(high) * 0.1, 0.05)
        return low - spread, high + spread
    margin = (high - low) * 0.08
    return low - margin, high + margin


def _nice_ticks(low: float, high: float, *, cover: bool = False) -> list[float]:
    """Return round values (steps of 1, 2, 2.5 or 5 times a power of ten) within the range.

    With `cover`, the last one is at or above `high`, so that it can be the axis' top.
    """
    raw = (high - low) / 3
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    count = int((high - first) / step + 1e-9) + 1
    ticks = [first + k * step for k in range(count)] or [low]
    if cover and ticks[-1] < high - 1e-12:
        ticks.append(ticks[-1] + step)
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    """Return up to four whole decades between `low` and `high` (log10 values)."""
    decades = list(range(int(high), math.ceil(low) - 1, -1))
    stride = max(1, math.ceil((len(decades) - 1) / 3))
    return [float(decade) for decade in decades[::stride]]


def _grid(frame: _Frame, y: float) -> str:
    return (
        f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{y:.1f}" y2="{y:.1f}"/>'
    )


def _format(value: float, log: bool = False) -> str:
    """Write a number short and plain: 1e-06, 0.05, 3.2, 1,050."""
    if log and 0 < value < 1e-3:
        return f"{value:.0e}".replace("e-0", "e-")
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 0.01:
        return f"{value:.3g}"
    return f"{value:.1e}"
