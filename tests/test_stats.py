import numpy as np
import pytest

from sim2real.stats import (
    paired_comparison,
    paired_gain_interval,
    paired_gain_pvalue,
    success_summary,
    wilson_interval,
)


def test_wilson_interval_contains_the_rate_and_narrows_with_more_trials():
    lo, hi = wilson_interval(8, 10)
    assert lo < 0.8 < hi
    lo2, hi2 = wilson_interval(80, 100)
    assert hi2 - lo2 < hi - lo


def test_wilson_interval_known_value():
    # 195 of 200: the Wilson interval is about 0.943-0.989.
    lo, hi = wilson_interval(195, 200)
    assert lo == pytest.approx(0.9428, abs=1e-3) and hi == pytest.approx(0.9893, abs=1e-3)


def test_edges_and_bad_input():
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(6, 5)
    assert success_summary(3, 4)["episodes"] == 4


def test_paired_gain_interval_resamples_whole_groups():
    groups = np.repeat([0, 1, 2, 3], 5)
    base = np.full(20, 0.3)
    # The same gain in every group: no spread, whatever is resampled.
    assert paired_gain_interval(base, base - 0.05, groups) == pytest.approx((0.05, 0.05))
    # One group carries the whole gain, the others lose a little: the interval straddles zero.
    lo, hi = paired_gain_interval(base, base + np.repeat([-0.3, 0.04, 0.04, -0.01], 5), groups)
    assert lo < 0 < hi
    # Within-group noise does not count as evidence: rows of one group move together when resampled.
    noisy = base - 0.05 + np.tile([0.2, -0.2, 0.1, -0.1, 0.0], 4)
    assert paired_gain_interval(base, noisy, groups) == pytest.approx((0.05, 0.05))
    with pytest.raises(ValueError, match="equally long"):
        paired_gain_interval(base, base[:3], groups)


def test_paired_gain_pvalue_is_exact_over_few_groups():
    four = np.repeat(np.arange(4), 3)
    base = np.full(12, 0.3)
    # Lower in all 4 groups: only the observed pattern of 16 is as extreme.
    assert paired_gain_pvalue(base, base - 0.05, four) == pytest.approx(1 / 16)
    # ... while the bootstrap over those 4 groups excludes zero (all its resamples gain).
    assert paired_gain_interval(base, base - 0.05, four)[0] > 0
    # No difference, or a loss: nothing to show.
    assert paired_gain_pvalue(base, base, four) == 1.0
    assert paired_gain_pvalue(base, base + 0.05, four) == 1.0
    # Lower in 3 of 4 groups by the same amount: patterns at least as extreme are the observed one,
    # the three others with one group losing, and the one where all gain: 5 of 16.
    other = base - np.repeat([0.05, 0.05, 0.05, -0.05], 3)
    assert paired_gain_pvalue(base, other, four) == pytest.approx(5 / 16)
    # Groups weigh by their rows: one group of 9 rows outweighs three of one row whatever their
    # signs, so the evidence is one group's, p = 1/2.
    heavy = np.array([0] * 9 + [1, 2, 3])
    assert paired_gain_pvalue(base, base - np.where(heavy == 0, 0.05, -0.05), heavy) == pytest.approx(1 / 2)


def test_paired_gain_pvalue_draws_over_many_groups():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(40), 2)
    base = rng.normal(0.3, 0.05, 80)
    p_gain = paired_gain_pvalue(base, base - 0.03 + rng.normal(0, 0.01, 80), groups)
    p_none = paired_gain_pvalue(base, base + rng.normal(0, 0.05, 80), groups)
    assert p_gain < 0.001 < 0.05 < p_none
    # A diverged loss shows nothing (and never passes a p < level test).
    assert np.isnan(paired_gain_pvalue(base, np.where(groups == 3, np.nan, base - 0.03), groups))
    with pytest.raises(ValueError, match="equally long"):
        paired_gain_pvalue(base, base[:3], groups)


def test_paired_comparison_knows_a_difference_two_intervals_cannot_see():
    # 200 episodes; b grasps 130 of them, a the same 130 and 10 more.
    b = np.zeros(200)
    b[:130] = 1
    a = b.copy()
    a[130:140] = 1
    out = paired_comparison(a, b)
    assert out["episodes"] == 200 and out["a"] == 0.7 and out["b"] == 0.65
    assert out["difference"] == pytest.approx(0.05) and out["a_only"] == 10 and out["b_only"] == 0
    lo, hi = out["difference_ci95"]
    assert 0 < lo < 0.05 < hi < 0.1  # the pairing makes the gain clear ...
    assert wilson_interval(140, 200)[0] < wilson_interval(130, 200)[1]  # ... which the two intervals do not
    assert out["ratio"] == pytest.approx(0.7 / 0.65)
    r_lo, r_hi = out["ratio_ci95"]
    assert 1 < r_lo < out["ratio"] < r_hi
    # Identical outcomes: nothing to tell apart, whatever is resampled.
    same = paired_comparison(b, b)
    assert same["difference_ci95"] == [0.0, 0.0] and same["ratio_ci95"] == [1.0, 1.0]
    # Independent outcomes with the same rates: the interval straddles zero.
    rng = np.random.default_rng(0)
    assert paired_comparison(rng.permutation(a), b)["difference_ci95"][0] < 0


def test_paired_comparison_edges_and_bad_input():
    assert paired_comparison([1, 0, 1], [0, 0, 0])["ratio"] is None
    assert paired_comparison([1, 0, 1], [0, 0, 0])["ratio_ci95"] is None
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([1, 0], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        paired_comparison([1, 0.5], [1, 0])
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([], [])
