"""The paired bootstrap over goals (and seeds): known inputs and what pairing buys."""

from __future__ import annotations

import numpy as np
import pytest

from rlem_gym.benchmarks.stats import bootstrap_ci, paired_bootstrap_ci


def test_constant_difference_has_a_zero_width_interval():
    rng = np.random.default_rng(0)
    ref = rng.random((2, 30))  # goals of very different difficulty
    est = paired_bootstrap_ci(ref + 0.1, ref, n_boot=500)
    assert est.mean == pytest.approx(0.1)
    assert est.lo == pytest.approx(0.1) and est.hi == pytest.approx(0.1) and est.n == 60
    # the unpaired intervals of the two agents overlap although every goal improved by 0.1
    a, b = bootstrap_ci(ref + 0.1, n_boot=500), bootstrap_ci(ref, n_boot=500)
    assert a.lo < b.hi


def test_known_two_valued_difference():
    # one seed, 4 goals, differences 1, 1, 0, 0: mean 0.5, the interval spans [0, 1]
    est = paired_bootstrap_ci([[1.0, 1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0, 0.0]], n_boot=4000, seed=3)
    assert est.mean == 0.5 and est.n == 4
    assert est.lo == 0.0 and est.hi == 1.0
    # seeded: same inputs, same interval
    again = paired_bootstrap_ci([[1.0, 1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0, 0.0]], n_boot=4000, seed=3)
    assert again == est


def test_interval_matches_a_direct_bootstrap_of_differences():
    rng = np.random.default_rng(5)
    ref = rng.random(50)
    agent = ref + rng.normal(0.1, 0.05, 50)
    est = paired_bootstrap_ci(agent, ref, n_boot=2000, seed=0)
    assert est.mean == pytest.approx(float(np.mean(agent - ref)))
    assert 0.0 < est.lo < est.mean < est.hi < 0.2
    # a percentile bootstrap of the mean difference with its own generator lands close by
    draws = np.random.default_rng(1).integers(0, 50, size=(4000, 50))
    lo, hi = np.quantile((agent - ref)[draws].mean(axis=1), [0.025, 0.975])
    assert est.lo == pytest.approx(lo, abs=0.005) and est.hi == pytest.approx(hi, abs=0.005)


def test_missing_cells_drop_the_pair_and_shapes_must_match():
    est = paired_bootstrap_ci([[1.0, np.nan, 3.0]], [[0.0, 5.0, np.nan]], n_boot=100)
    assert est.n == 1 and est.mean == 1.0
    with pytest.raises(ValueError, match="same seeds x goals shape"):
        paired_bootstrap_ci([[1.0, 2.0]], [[1.0, 2.0, 3.0]])
