"""Exact sums of floats, kept as canonical float expansions so that merging is exact.

A sum of float64 values is an exact rational number; keeping it exactly (instead of as a rounded
float) makes `merge` associative and `sketch(a + b) == merge(sketch(a), sketch(b))` hold exactly.
It is stored as its greedy expansion: the correctly rounded float of the sum, then the rounded
float of the remainder, and so on. That list is unique for a given exact value, its first term is
the sum as a plain float, and it round-trips through JSON.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

# Sums of at most this many 27-bit halves stay below 2**53, so float64 accumulates them exactly.
_CHUNK = 1 << 24
_HALF = 26
_MAX = Fraction(sys.float_info.max)


def exact_sum(values: np.ndarray) -> Fraction:
    """Return the exact sum of finite float64 values."""
    if values.size == 0:
        return Fraction(0)
    parts: list[tuple[int, int]] = []
    for start in range(0, values.size, _CHUNK):
        chunk = np.asarray(values[start : start + _CHUNK], dtype=np.float64)
        mantissa, exponent = np.frexp(chunk)
        # Each value is an integer below 2**53 times a power of two: sum integers per power.
        integers = np.ldexp(mantissa, 53).astype(np.int64)
        powers = exponent.astype(np.int64) - 53
        base = int(powers.min())
        offsets = powers - base
        high = (integers >> _HALF).astype(np.float64)
        low = (integers & ((1 << _HALF) - 1)).astype(np.float64)
        high_sums = np.bincount(offsets, weights=high)
        low_sums = np.bincount(offsets, weights=low)
        for offset in np.flatnonzero(high_sums.astype(bool) | low_sums.astype(bool)):
            value = (int(high_sums[offset]) << _HALF) + int(low_sums[offset])
            parts.append((value, base + int(offset)))
    lowest = min(power for _, power in parts) if parts else 0
    total = 0
    for value, power in parts:
        total += value << (power - lowest)
    return Fraction(total) * Fraction(2) ** lowest


def expansion(value: Fraction) -> list[float]:
    """Return the canonical float expansion of an exact value ([] for zero)."""
    terms: list[float] = []
    rest = value
    while rest:
        # Past the float range, peel off the largest float: still exact, merely longer.
        term = float(rest) if abs(rest) <= _MAX else math.copysign(float(_MAX), rest)
        terms.append(term)
        rest -= Fraction(term)
    return terms


def value_of(terms: Sequence[float]) -> Fraction:
    """Return the exact value of a float expansion."""
    return sum((Fraction(t) for t in terms), Fraction(0))
