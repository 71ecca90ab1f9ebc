"""Small statistics helpers shared by every evaluation: success rates come with an interval."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval (default z) of a binomial proportion, as (low, high)."""
    if trials <= 0:
        raise ValueError(f"trials: must be positive, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes: must be in [0, {trials}], got {successes}")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def success_summary(successes: int, trials: int) -> dict[str, float | int | list[float]]:
    """{"success_rate", "episodes", "ci95": [low, high]} as stored in metrics files."""
    low, high = wilson_interval(successes, trials)
    return {"success_rate": successes / trials, "episodes": trials, "ci95": [low, high]}


def paired_gain_interval(base, other, groups, seed: int = 0, draws: int = 2000,
                         level: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval (``level``) of mean(base) - mean(other) over paired rows (e.g. per-row
    losses of two models on the same held-out rows), resampling whole groups (``groups``, one id per
    row; e.g. episodes) with replacement: rows of one group are not independent evidence."""
    base, other, groups = np.asarray(base, float), np.asarray(other, float), np.asarray(groups)
    if not len(base) or base.shape != other.shape or groups.shape != base.shape:
        raise ValueError(f"paired_gain_interval: base, other and groups must be equally long and not empty, "
                         f"got {base.shape}, {other.shape}, {groups.shape}")
    ids = np.unique(groups)
    rows = [np.flatnonzero(groups == g) for g in ids]
    rng = np.random.default_rng(seed)
    gains = np.empty(draws)
    for k in range(draws):
        pick = np.concatenate([rows[i] for i in rng.integers(0, len(ids), len(ids))])
        gains[k] = base[pick].mean() - other[pick].mean()
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(gains, [tail, 100 - tail])
    return float(lo), float(hi)
