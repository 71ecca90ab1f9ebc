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
    base, other, groups = _paired("paired_gain_interval", base, other, groups)
    mean_base, mean_other = _resampled_means((base, other), groups, draws, seed)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(mean_base - mean_other, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_gain_pvalue(base, other, groups, exact_up_to: int = 16, draws: int = 20000, seed: int = 0) -> float:
    """One-sided p-value that ``other`` is *not* lower than ``base`` on average over paired rows (e.g.
    per-row losses of two models on the same held-out rows), by a sign-flip randomization test over
    whole groups (``groups``, one id per row; e.g. episodes): under "no difference" each group's
    difference is as likely negated, so p is the share of the 2^G sign patterns (all of them up to
    ``exact_up_to`` groups, else ``draws`` random ones) whose mean difference is at least the one seen.

    Why beside ``paired_gain_interval``: a bootstrap over a handful of groups is far narrower than its
    level claims (four episodes give it 35 distinct resamples), while this test is exact where it
    matters, over few groups (beyond ``exact_up_to``, a Monte Carlo estimate, valid as well); with G
    groups no p below 2^-G is possible, so four episodes can never show a gain at the 2.5 % level,
    whatever the losses. NaN when a difference is not finite (nothing can be shown)."""
    base, other, groups = _paired("paired_gain_pvalue", base, other, groups)
    _, inverse = np.unique(groups, return_inverse=True)
    # Each group's summed difference: the mean difference over all rows is their sum over the row count,
    # so flipping a group's sign flips its sum (groups keep their weight in rows).
    sums = np.bincount(inverse, base - other)
    if not np.isfinite(sums).all():
        return float("nan")
    n = len(sums)
    # A relative tolerance: sign patterns equal to the observed one in exact arithmetic stay ties.
    seen = sums.sum() - 1e-12 * np.abs(sums).sum()
    if n <= exact_up_to:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(signs @ sums >= seen))
    signs = np.random.default_rng(seed).choice([-1, 1], (draws, n))
    # The observed pattern counts as one of the randomizations when they are drawn: p is never 0.
    return float((np.sum(signs @ sums >= seen) + 1) / (draws + 1))


def _paired(name: str, base, other, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paired tests' input as arrays (losses as float), or ValueError naming ``name``."""
    base, other, groups = np.asarray(base, float), np.asarray(other, float), np.asarray(groups)
    if not len(base) or base.shape != other.shape or groups.shape != base.shape:
        raise ValueError(f"{name}: base, other and groups must be equally long and not empty, "
                         f"got {base.shape}, {other.shape}, {groups.shape}")
    return base, other, groups


def _resampled_means(columns, groups: np.ndarray, draws: int, seed: int) -> list[np.ndarray]:
    """The bootstrap both paired intervals use: ``draws`` times, as many groups as there are drawn
    with replacement (a group's rows always together), and each column's mean over their rows.
    Returns one (draws,) array per column. Per-group sums make it one vectorized draw."""
    ids, inverse = np.unique(groups, return_inverse=True)
    pick = np.random.default_rng(seed).integers(0, len(ids), (draws, len(ids)))
    rows = np.bincount(inverse, minlength=len(ids))[pick].sum(axis=1)
    return [np.bincount(inverse, c, len(ids))[pick].sum(axis=1) / rows for c in columns]


def paired_comparison(a, b, draws: int = 5000, seed: int = 0, level: float = 0.95) -> dict:
    """Two policies' outcomes (0/1) on the *same* episodes, ``a[i]`` and ``b[i]`` from episode i:
    their success rates, the difference a - b and the ratio a / b, each with a bootstrap interval
    (``level``) that resamples episodes, so a scene both policies find hard counts once, not twice.
    On paired episodes the difference is known far better than two independent intervals suggest.

    Returns {"episodes", "a", "b", "difference", "difference_ci95", "ratio", "ratio_ci95", "a_only",
    "b_only"} (``*_only``: episodes one policy grasped and the other did not); the ratio and its
    interval are None when b never succeeds (resamples where b has no success are left out).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not len(a) or a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_comparison: a and b must be equally long 1-D outcomes, got {a.shape}, {b.shape}")
    if not np.isin(a, (0.0, 1.0)).all() or not np.isin(b, (0.0, 1.0)).all():
        raise ValueError("paired_comparison: outcomes must be 0 or 1")
    ma, mb = _resampled_means((a, b), np.arange(len(a)), draws, seed)  # each episode its own group
    tail = 100 * (1 - level) / 2
    d_lo, d_hi = np.percentile(ma - mb, [tail, 100 - tail])
    ratio = ratio_ci = None
    if b.sum() > 0:
        ratio = float(a.mean() / b.mean())
        r = ma[mb > 0] / mb[mb > 0]
        ratio_ci = [float(x) for x in np.percentile(r, [tail, 100 - tail])]
    return {"episodes": len(a), "a": float(a.mean()), "b": float(b.mean()),
            "difference": float(a.mean() - b.mean()), "difference_ci95": [float(d_lo), float(d_hi)],
            "ratio": ratio, "ratio_ci95": ratio_ci,
            "a_only": int(((a == 1) & (b == 0)).sum()), "b_only": int(((a == 0) & (b == 1)).sum())}
