"""The cluster (block) bootstrap: whole clusters of goals resampled, plain and paired."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlem_gym.benchmarks.stats import (
    bootstrap_ci,
    cluster_bootstrap_ci,
    paired_bootstrap_ci,
    paired_cluster_bootstrap_ci,
)

cell = st.one_of(st.floats(0.0, 100.0), st.just(float("nan")))


@st.composite
def tables(draw, max_seeds=3, max_goals=12):
    seeds = draw(st.integers(1, max_seeds))
    goals = draw(st.integers(1, max_goals))
    return np.array(draw(st.lists(st.lists(cell, min_size=goals, max_size=goals), min_size=seeds, max_size=seeds)))


def _same(a, b) -> bool:
    """Equal estimates, NaN equal to NaN (no data)."""
    return a.n == b.n and np.array_equal([a.mean, a.lo, a.hi], [b.mean, b.lo, b.hi], equal_nan=True)


@settings(max_examples=150, deadline=None)
@given(tables(), st.integers(0, 2**16), st.randoms(use_true_random=False))
def test_clusters_of_one_goal_give_the_per_goal_interval(table, seed, rnd):
    # any distinct labels, in any order: each goal its own cluster
    labels = [f"product {i}" for i in range(table.shape[1])]
    rnd.shuffle(labels)
    assert _same(cluster_bootstrap_ci(table, labels, n_boot=300, seed=seed), bootstrap_ci(table, n_boot=300, seed=seed))
    other = np.roll(np.nan_to_num(table, nan=50.0), 1, axis=1)
    assert _same(
        paired_cluster_bootstrap_ci(table, other, labels, n_boot=300, seed=seed),
        paired_bootstrap_ci(table, other, n_boot=300, seed=seed),
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=5, max_size=25).filter(lambda v: max(v) - min(v) > 0.05),
    st.integers(3, 6),
    st.integers(0, 1000),
)
def test_perfectly_correlated_goals_in_a_cluster_widen_the_interval(values, size, seed):
    """Each cluster's goals have one value: the clustered interval is the bootstrap of the cluster
    values themselves, wider than the per-goal one that counts every copy as independent."""
    table = np.repeat(values, size)
    clusters = np.repeat(np.arange(len(values)), size).tolist()
    clustered = cluster_bootstrap_ci(table, clusters, n_boot=2000, seed=seed)
    per_goal = bootstrap_ci(table, n_boot=2000, seed=seed)
    of_values = bootstrap_ci(values, n_boot=2000, seed=seed)
    assert clustered.mean == pytest.approx(per_goal.mean) and clustered.n == len(values) * size
    assert clustered.lo == pytest.approx(of_values.lo) and clustered.hi == pytest.approx(of_values.hi)
    assert clustered.hi - clustered.lo > per_goal.hi - per_goal.lo


def test_a_large_sample_widens_by_the_square_root_of_the_cluster_size():
    values = np.random.default_rng(2).random(40)
    clustered = cluster_bootstrap_ci(np.repeat(values, 4), np.repeat(np.arange(40), 4).tolist())
    per_goal = bootstrap_ci(np.repeat(values, 4))
    assert (clustered.hi - clustered.lo) / (per_goal.hi - per_goal.lo) == pytest.approx(2.0, rel=0.15)


def test_unequal_clusters_weigh_by_their_goals():
    # cluster a: 3 goals at 1, cluster b: 1 goal at 0. Resamples aa -> 1, ab / ba -> 3/4 (the mean
    # over the 4 goals, not the mean of the two cluster means), bb -> 0, with chances 1/4, 1/2, 1/4
    est = cluster_bootstrap_ci([1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"], level=0.4, n_boot=4000, seed=1)
    assert est.mean == 0.75 and est.n == 4
    assert est.lo == 0.75 and est.hi == 0.75
    wide = cluster_bootstrap_ci([1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"], n_boot=4000, seed=1)
    assert (wide.lo, wide.hi) == (0.0, 1.0)


def test_paired_differences_resample_the_same_clusters_for_both_rows():
    rng = np.random.default_rng(4)
    clusters = [c for c in range(12) for _ in range(rng.integers(1, 5))]
    ref = rng.random((2, len(clusters)))  # clusters of very different difficulty
    # a constant gain: any resample of the same clusters for both rows gives exactly +0.1
    est = paired_cluster_bootstrap_ci(ref + 0.1, ref, clusters, n_boot=500)
    assert est.mean == pytest.approx(0.1) and est.n == ref.size
    assert est.lo == pytest.approx(0.1) and est.hi == pytest.approx(0.1)
    # the interval is that of the difference of the two rows' means, both over the same draws
    agent = ref + rng.normal(0.05, 0.2, ref.shape)
    est = paired_cluster_bootstrap_ci(agent, ref, clusters, n_boot=700, seed=9)
    draw = np.random.default_rng(9)
    rows = draw.integers(0, 2, size=(700, 2))
    cols = draw.integers(0, 12, size=(700, 12))
    goals = np.array(clusters)
    diffs = []
    for r, c in zip(rows, cols):
        picked = np.concatenate([np.flatnonzero(goals == k) for k in c])
        diffs.append(agent[np.ix_(r, picked)].mean() - ref[np.ix_(r, picked)].mean())
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert est.lo == pytest.approx(lo) and est.hi == pytest.approx(hi)


def test_a_single_cluster_and_missing_episodes():
    one = cluster_bootstrap_ci([[0.2, 0.9, 0.4]], ["p", "p", "p"])
    assert one.mean == pytest.approx(0.5) and one.lo == pytest.approx(0.5) and one.hi == pytest.approx(0.5)
    # NaN cells are left out (a whole cluster may be missing); n counts the episodes
    est = cluster_bootstrap_ci([[1.0, np.nan, np.nan, 0.0, 1.0]], ["a", "b", "b", "c", "c"], n_boot=500)
    assert est.n == 3 and est.mean == pytest.approx(2 / 3) and 0.0 <= est.lo <= est.hi <= 1.0
    empty = cluster_bootstrap_ci([[np.nan, np.nan]], ["a", "b"])
    assert empty.n == 0 and np.isnan(empty.mean) and empty.fmt() == "n/a"
    pairs = paired_cluster_bootstrap_ci([[1.0, np.nan, 3.0]], [[0.0, 5.0, np.nan]], ["a", "a", "b"])
    assert pairs.n == 1 and pairs.mean == 1.0
    again = cluster_bootstrap_ci([[1.0, np.nan, np.nan, 0.0, 1.0]], ["a", "b", "b", "c", "c"], n_boot=500)
    assert again == est  # seeded


def test_bad_inputs_are_refused_in_one_line():
    with pytest.raises(ValueError, match="one cluster per goal: got 2 ids for 3 goals"):
        cluster_bootstrap_ci([0.0, 1.0, 1.0], ["a", "b"])
    with pytest.raises(ValueError, match="same seeds x goals shape"):
        paired_cluster_bootstrap_ci([[1.0, 2.0]], [[1.0, 2.0, 3.0]], ["a", "b"])
    with pytest.raises(ValueError, match="seeds x goals table"):
        cluster_bootstrap_ci(np.zeros((2, 2, 2)), ["a", "b"])
