"""policies.sensitivity: the error sources of the servo-law sensitivity bench."""

import numpy as np
import pytest

from policies.sensitivity import estimate_error


def test_bias_is_one_fixed_vector_of_the_given_length_per_episode():
    rng = np.random.default_rng(0)
    first, second = estimate_error("bias", 0.02, rng), estimate_error("bias", 0.02, rng)
    a = [first() for _ in range(5)]
    assert all(np.array_equal(a[0], x) for x in a) and np.linalg.norm(a[0]) == pytest.approx(0.02)
    assert not np.allclose(a[0], second())  # a new episode points elsewhere


def test_noise_is_fresh_every_step_with_the_given_spread_and_zero_means_exact():
    rng = np.random.default_rng(0)
    noise = estimate_error("noise", 0.01, rng)
    draws = np.array([noise() for _ in range(4000)])
    assert draws.std(axis=0) == pytest.approx([0.01, 0.01], rel=0.1) and abs(draws.mean()) < 1e-3
    assert not np.array_equal(draws[0], draws[1])
    assert np.array_equal(estimate_error("noise", 0.0, rng)(), [0.0, 0.0])


def test_bad_kind_or_size_is_refused_by_name():
    with pytest.raises(ValueError, match="error kind"):
        estimate_error("drift", 0.01, np.random.default_rng())
    with pytest.raises(ValueError, match="error size"):
        estimate_error("bias", -0.01, np.random.default_rng())
