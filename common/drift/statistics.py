"""Drift statistics on binned counts, vectorised over features: one row of counts per feature.

Every function takes 2-D arrays (features x cells) or 1-D arrays (one feature). Rows may be padded
with empty cells (and, for edges, with repeats of the last edge): padding changes no result.
"""

from __future__ import annotations

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

PSI_EPSILON = 1e-4
"""Share that replaces an empty cell's zero in PSI, which would otherwise be infinite."""

KS_EXACT_MAX_N = 10_000
"""Largest effective sample size whose KS p-value uses scipy's exact one-sample `kstwo`."""

MIN_STD = 0.001
"""Floor of the reference standard deviation that normalises the Wasserstein distance."""


def shares(counts: np.ndarray) -> np.ndarray:
    """Return each row of counts as shares of its total (all zero for an empty row)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def psi(reference: np.ndarray, window: np.ndarray, epsilon: float = PSI_EPSILON) -> np.ndarray:
    """Return the population stability index, sum((q - p) * ln(q / p)), empty cells as `epsilon`."""
    p = shares(reference)
    q = shares(window)
    p = np.where(p == 0, epsilon, p)
    q = np.where(q == 0, epsilon, q)
    return np.sum((q - p) * np.log(q / p), axis=-1)


def jensen_shannon(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Return the Jensen-Shannon distance in base 2 (0 for equal shares, 1 for disjoint ones)."""
    p = shares(reference)
    q = shares(window)
    m = (p + q) / 2
    divergence = (special.rel_entr(p, m).sum(axis=-1) + special.rel_entr(q, m).sum(axis=-1)) / 2
    return np.sqrt(np.maximum(divergence / np.log(2), 0.0))


def ks_statistic(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Return the largest gap between the two cumulative distributions at the cell boundaries."""
    reference = np.asarray(reference, dtype=np.float64)
    window = np.asarray(window, dtype=np.float64)
    gaps = np.cumsum(shares(reference), axis=-1) - np.cumsum(shares(window), axis=-1)
    return np.max(np.abs(gaps), axis=-1, initial=0.0)


def ks_pvalue(statistic: np.ndarray, n_reference: np.ndarray, n_window: np.ndarray) -> np.ndarray:
    """Return the two-sample KS p-value for both sample sizes, as `ks_2samp(method="asymp")`.

    That is `kstwo.sf(D, round(n*m/(n+m)))`. Past `KS_EXACT_MAX_N` kstwo costs up to 0.5 s a call,
    so the Kolmogorov limit with a 1/(6*sqrt(n)) shift stands in: within 0.6% of it for p > 1e-10.
    """
    statistic = np.atleast_1d(np.asarray(statistic, dtype=np.float64))
    n_reference = np.broadcast_to(np.asarray(n_reference, dtype=np.float64), statistic.shape)
    n_window = np.broadcast_to(np.asarray(n_window, dtype=np.float64), statistic.shape)
    effective = np.maximum(np.round(n_reference * n_window / (n_reference + n_window)), 1.0)
    pvalue = np.empty_like(statistic)
    small = effective <= KS_EXACT_MAX_N
    pvalue[small] = scipy_stats.kstwo.sf(statistic[small], effective[small])
    root = np.sqrt(effective[~small])
    pvalue[~small] = scipy_stats.kstwobign.sf(root * statistic[~small] + 1 / (6 * root))
    return np.clip(pvalue, 0.0, 1.0)


def wasserstein(
    edges: np.ndarray,
    reference: np.ndarray,
    reference_means: np.ndarray,
    window: np.ndarray,
    window_means: np.ndarray,
    below: np.ndarray,
    above: np.ndarray,
    tails: np.ndarray,
) -> np.ndarray:
    """Return the Wasserstein-1 distance, the area between the two distribution functions.

    `reference` and `window` count the fine bins between `edges` and `*_means` are the mean values
    in each bin; `below` and `above` count the window's values outside the edges and `tails` is
    their summed distance to the nearest edge. In each bin the means give the signed area between
    the two functions exactly, which is the area itself unless the functions cross inside the bin;
    there each bin's values are taken to sit at their mean.
    """
    edges = np.atleast_2d(np.asarray(edges, dtype=np.float64))
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    window = np.atleast_2d(np.asarray(window, dtype=np.float64))
    below = np.asarray(below, dtype=np.float64).reshape(-1, 1)
    above = np.asarray(above, dtype=np.float64).reshape(-1, 1)
    n_window = window.sum(axis=-1, keepdims=True) + below + above
    n_reference = reference.sum(axis=-1, keepdims=True)
    zero = np.zeros((reference.shape[0], 1))
    reference_cdf = np.concatenate((zero, np.cumsum(reference, axis=-1)), axis=-1) / n_reference
    window_cdf = (below + np.concatenate((zero, np.cumsum(window, axis=-1)), axis=-1)) / n_window
    gap = reference_cdf - window_cdf
    left, right = gap[:, :-1], gap[:, 1:]
    starts, ends = edges[:, :-1], edges[:, 1:]
    reference_means = np.clip(np.atleast_2d(reference_means), starts, ends)
    window_means = np.clip(np.atleast_2d(window_means), starts, ends)
    reference_step = reference / n_reference
    window_step = window / n_window
    # The integral over [a, b) of a distribution function is F(a) * (b - a) plus, for each value
    # v inside, (b - v) / n: the bin's share times (b - its mean value).
    signed = (
        (ends - starts) * left
        + reference_step * (ends - reference_means)
        - window_step * (ends - window_means)
    )
    first = np.minimum(reference_means, window_means)
    second = np.maximum(reference_means, window_means)
    middle = np.where(reference_means <= window_means, left + reference_step, left - window_step)
    stepped = (
        np.abs(left) * (first - starts)
        + np.abs(middle) * (second - first)
        + np.abs(right) * (ends - second)
    )
    inside = np.where(left * right < 0, stepped, np.abs(signed)).sum(axis=-1)
    return inside + np.asarray(tails, dtype=np.float64) / n_window[:, 0]


def chi2_pvalue(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Return the chi-square p-value of the window's counts against the reference's shares.

    As `scipy.stats.chisquare(window, reference_shares * window.sum())` over the cells the
    reference has; a window value in a cell the reference lacks gives 0, a single cell gives 1.
    """
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    window = np.atleast_2d(np.asarray(window, dtype=np.float64))
    expected = shares(reference) * window.sum(axis=-1, keepdims=True)
    used = expected > 0
    terms = np.divide((window - expected) ** 2, expected, out=np.zeros_like(expected), where=used)
    statistic = terms.sum(axis=-1)
    freedom = used.sum(axis=-1) - 1
    pvalue = np.ones(statistic.shape)
    tested = freedom >= 1
    pvalue[tested] = scipy_stats.chi2.sf(statistic[tested], freedom[tested])
    pvalue[((~used) & (window > 0)).any(axis=-1)] = 0.0
    return pvalue


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Return Benjamini-Hochberg adjusted p-values (reject where adjusted <= the FDR level)."""
    pvalues = np.asarray(pvalues, dtype=np.float64)
    n = len(pvalues)
    if n == 0:
        return pvalues.copy()
    order = np.argsort(pvalues)
    scaled = pvalues[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out
