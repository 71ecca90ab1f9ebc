"""Small statistics helpers shared by every evaluation: success rates come with an interval."""

from __future__ import annotations

import math


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
