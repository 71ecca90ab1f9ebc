import numpy as np
import pytest

from sim2real.stats import paired_gain_interval, success_summary, wilson_interval


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
