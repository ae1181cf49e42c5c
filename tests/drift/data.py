"""Generated frames for the drift tests: mixed distributions, drawn from a seeded generator."""

from __future__ import annotations

import numpy as np
import pandas as pd

CITIES = ["lyon", "paris", "nice", "lille", "brest", "nantes"]
CITY_SHARES = [0.3, 0.2, 0.2, 0.1, 0.1, 0.1]


def mixed_frame(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """Return numeric features of several shapes and one categorical, shifted by `shift` std."""
    return pd.DataFrame(
        {
            "normal": rng.normal(shift, 1.0, rows),
            "lognormal": rng.lognormal(0.0, 0.5, rows) * np.exp(shift * 0.5),
            "uniform": rng.uniform(0.0, 1.0, rows) + shift * 0.29,
            "counts": rng.poisson(20, rows).astype(float) + np.round(shift * 4.5),
            "city": rng.choice(CITIES, p=_city_shares(shift), size=rows),
        }
    )


def _city_shares(shift: float) -> list[float]:
    if shift == 0:
        return CITY_SHARES
    shares = np.array(CITY_SHARES) * np.exp(-shift * np.arange(len(CITIES)))
    return list(shares / shares.sum())


def numeric_frame(rng: np.random.Generator, rows: int, columns: int = 20) -> pd.DataFrame:
    """Return `columns` continuous features of varied shapes and scales."""
    makers = [
        lambda n: rng.normal(0, 1, n),
        lambda n: rng.lognormal(0, 1, n),
        lambda n: rng.uniform(-50, 50, n),
        lambda n: rng.exponential(3, n),
        lambda n: rng.standard_t(3, n),
        lambda n: 1.7e9 + rng.uniform(0, 3e7, n),
    ]
    return pd.DataFrame({f"f{i}": makers[i % len(makers)](rows) for i in range(columns)})
