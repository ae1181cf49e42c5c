"""Choose a numeric feature's fine quantile edges and decile edges, short enough for small JSON."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# An edge may move down by this share of the gap to its neighbour so that it prints in few digits:
# the counts are taken on the moved edges, so only the within-bin positions change, by <= 0.1%.
GAP_SHARE = 1e-3
# A constant feature has no gap to measure; its edges may move by this share of its magnitude.
SCALE_SHARE = 1e-6


@dataclass(frozen=True)
class Edges:
    """The edges of one numeric feature and the reference counts between them."""

    edges: np.ndarray
    counts: np.ndarray
    positions: np.ndarray
    deciles: np.ndarray
    discrete: bool


def choose_edges(ordered: np.ndarray, bins: int) -> Edges:
    """Return the edges and counts of sorted finite reference values on `bins` quantile bins.

    Bins are half-open, [edge[i], edge[i+1]); the first edge is <= the minimum and the last one is
    above the maximum, so every reference value falls in a bin. With at most `bins` distinct values
    the edges are the distinct values themselves (`discrete`), one value per bin. Otherwise the
    outermost bins are split further, at the 1st, 2nd, 4th, ... most extreme values, so that a
    long tail does not make one wide bin whose inside the statistics must guess.
    """
    n = len(ordered)
    if n == 0:
        empty = np.empty(0)
        return Edges(empty, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), empty, False)
    starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1))
    discrete = len(starts) <= bins
    decile_index = _inverted_cdf_index(np.arange(1, 10), 10, n)
    if discrete:
        raw = ordered[starts]
    else:
        fine_index = _inverted_cdf_index(np.arange(bins + 1), bins, n)
        tail = 2 ** np.arange(max(int(np.log2(max(n / bins, 1.0))), 0) + 1)
        extreme_index = np.concatenate((tail, n - 1 - tail)).clip(0, n - 1)
        raw = np.unique(ordered[np.union1d(np.union1d(fine_index, decile_index), extreme_index)])
    raw_deciles = np.unique(ordered[decile_index])
    edges = np.append(_shorten(raw), _top(raw))
    bounds = np.searchsorted(ordered, edges, side="left")
    counts = np.diff(bounds)
    deciles = edges[np.searchsorted(raw, raw_deciles)]
    return Edges(
        edges, counts.astype(np.int64), _positions(ordered, edges, bounds), deciles, discrete
    )


def _positions(ordered: np.ndarray, edges: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    # The mean place of each bin's values, in hundredths of its width: enough to compute the
    # area between two distribution functions inside a bin instead of assuming values spread evenly.
    counts = np.diff(bounds)
    filled = counts > 0
    sums = np.zeros(len(counts))
    if filled.any():
        sums[filled] = np.add.reduceat(ordered, bounds[:-1][filled])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        means = sums / np.where(filled, counts, 1)
        places = (means - edges[:-1]) / np.diff(edges)
    places = np.where(filled & np.isfinite(places), places, 0.5)
    return np.rint(np.clip(places, 0.0, 1.0) * 100).astype(np.int64)


def _inverted_cdf_index(steps: np.ndarray, of: int, n: int) -> np.ndarray:
    # The inverted-CDF quantile at level k/of is the value at index ceil(k*n/of) - 1; integer
    # arithmetic avoids 0.1*1000 = 100.00000000000001 picking the wrong value.
    steps = steps.astype(np.int64)
    return np.clip((steps * n + of - 1) // of - 1, 0, n - 1)


def _shorten(raw: np.ndarray) -> np.ndarray:
    if len(raw) > 1:
        gaps = np.diff(raw)
        room = np.concatenate((gaps[:1], gaps)) * GAP_SHARE
    else:
        room = np.maximum(np.abs(raw), 1.0) * SCALE_SHARE
    # Each edge stays above its left neighbour's value, so no reference value changes bin order.
    return shortest_in(raw - room, raw)


def _top(raw: np.ndarray) -> float:
    last = float(raw[-1])
    room = (
        float(raw[-1] - raw[-2]) * GAP_SHARE if len(raw) > 1 else max(abs(last), 1.0) * SCALE_SHARE
    )
    high = last + room
    if not high > last:
        high = float(np.nextafter(last, np.inf))
    return float(shortest_in(np.array([last]), np.array([high]))[0])


def shortest_in(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Return, for each pair, the number with fewest significant digits in (low, high]."""
    out = high.astype(np.float64, copy=True)
    todo = np.ones(len(out), dtype=bool)
    with np.errstate(divide="ignore"):
        magnitude = np.floor(np.log10(np.abs(out)))
    magnitude[~np.isfinite(magnitude)] = 0
    for digits in range(1, 17):
        if not todo.any():
            break
        index = np.flatnonzero(todo)
        candidate = _floor_to(out[index], (digits - 1 - magnitude[index]).astype(np.int64))
        ok = (candidate > low[index]) & (candidate <= high[index])
        out[index[ok]] = candidate[ok]
        todo[index[ok]] = False
    return out


def _floor_to(values: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    # Dividing the integer by an exact power of ten gives the float nearest to the short decimal,
    # which Python and JSON print as that decimal.
    out = np.full(len(values), np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        right = (decimals >= 0) & (decimals <= 22)
        scale = 10.0 ** decimals[right]
        out[right] = np.floor(values[right] * scale) / scale
        left = (decimals < 0) & (decimals >= -22)
        scale = 10.0 ** -decimals[left]
        out[left] = np.floor(values[left] / scale) * scale
    return out
