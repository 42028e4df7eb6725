"""Seeded 95% bootstrap confidence intervals over a seeds x goals table of episode outcomes, plain and paired.

Benchmark figures (score, success rate, steps, tokens, ...) are means over episodes that form a
crossed design: every agent runs every test goal once per seed. The interval here resamples
seeds and goals independently (rows and columns of the table, with replacement) and takes the
mean of each resampled sub-table, so both sources of variation widen the interval. With one seed
it reduces to the ordinary bootstrap over goals. Missing cells (failed episodes) are NaN and are
left out of each mean. The generator is seeded, so the same table always gives the same interval.

:func:`paired_bootstrap_ci` compares two agents that played the same goals: the interval of the
mean per-episode difference, both agents resampled with the same seeds and goals.

Goals are not always independent: several WebShop test goals can ask for the same product. The
cluster (block) bootstrap, :func:`cluster_bootstrap_ci` and :func:`paired_cluster_bootstrap_ci`,
resamples whole clusters of goals (e.g. every goal of one target product together) instead of
single goals, so that the interval reflects how many independent units the goals really hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

#: default number of bootstrap resamples
N_BOOT = 2000
#: default confidence level
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap confidence interval (``lo``, ``hi``) and the number of episodes."""

    mean: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Estimate":
        """The inverse of :meth:`as_dict` (a ``None`` bound, as results.json writes NaN, reads as NaN)."""
        nan = float("nan")
        return cls(*(nan if d[k] is None else d[k] for k in ("mean", "lo", "hi")), d["n"])

    def fmt(self, digits: int = 1, *, signed: bool = False, interval_only: bool = False) -> str:
        """``mean [lo, hi]`` with ``digits`` decimals (``n/a`` when there is no data); ``signed``
        writes a ``+`` before positive numbers (for differences); ``interval_only`` leaves the mean
        out (``[lo, hi]``, for a second interval of a mean shown beside it)."""
        if self.n == 0 or not np.isfinite(self.mean):
            return "n/a"
        sign = "+" if signed else ""
        interval = f"[{self.lo:{sign}.{digits}f}, {self.hi:{sign}.{digits}f}]"
        return interval if interval_only else f"{self.mean:{sign}.{digits}f} {interval}"


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    """Mean over the last two axes ignoring NaN (NaN where a resample holds no value)."""
    valid = np.isfinite(x)
    count = valid.sum(axis=(-2, -1))
    total = np.where(valid, x, 0.0).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bootstrap_ci(
    table: Sequence[Sequence[float]] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """Mean of ``table`` (seeds x goals, NaN = missing) and its crossed bootstrap percentile interval.

    A 1-D input is read as one seed. ``seed`` fixes the resampling, so results are reproducible.
    """
    data = np.asarray(table, dtype=float)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2:
        raise ValueError(f"bootstrap_ci expects a seeds x goals table, got shape {data.shape}")
    n = int(np.isfinite(data).sum())
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(np.nanmean(data))
    n_seeds, n_goals = data.shape
    if n == 1:
        return Estimate(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    cols = rng.integers(0, n_goals, size=(n_boot, n_goals))
    # resampled[b] = data[rows[b]][:, cols[b]]
    resampled = data[rows[:, :, None], cols[:, None, :]]
    means = _nanmean_rows(resampled)
    means = means[np.isfinite(means)]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return Estimate(mean, float(lo), float(hi), n)


def paired_bootstrap_ci(
    table: Sequence[Sequence[float]] | np.ndarray,
    reference: Sequence[Sequence[float]] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """Mean paired difference ``table - reference`` with its crossed bootstrap interval.

    Both are seeds x goals tables over the same seeds and goals (every agent plays the same
    goals), so the difference is taken cell by cell and the resampling draws the same seeds and
    goals for both agents: the interval is that of :func:`bootstrap_ci` on the difference table.
    Pairing removes the goal-to-goal variation both agents share, which makes the interval much
    narrower than comparing two separate intervals. A cell missing in either table (NaN) is left
    out; ``n`` counts the pairs.
    """
    a, b = _paired_tables(table, reference)
    return bootstrap_ci(a - b, n_boot=n_boot, level=level, seed=seed)


def _paired_tables(table: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both tables as 2-D float arrays of the same seeds x goals shape (a 1-D input is one seed)."""
    a = np.asarray(table, dtype=float)
    b = np.asarray(reference, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if b.ndim == 1:
        b = b[None, :]
    if a.shape != b.shape:
        raise ValueError(f"paired tables must have the same seeds x goals shape, got {a.shape} and {b.shape}")
    return a, b


def _cluster_index(clusters: Sequence[Hashable], n_goals: int) -> tuple[np.ndarray, int]:
    """Cluster position of every goal (clusters numbered by first appearance) and the number of clusters."""
    if len(clusters) != n_goals:
        raise ValueError(f"clusters must name one cluster per goal: got {len(clusters)} ids for {n_goals} goals")
    order: dict[Hashable, int] = {}
    index = np.array([order.setdefault(c, len(order)) for c in clusters], dtype=np.intp)
    return index, len(order)


def cluster_bootstrap_ci(
    table: Sequence[Sequence[float]] | np.ndarray,
    clusters: Sequence[Hashable],
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """Mean of ``table`` (seeds x goals, NaN = missing) with a cluster (block) bootstrap interval.

    ``clusters`` names the cluster of every goal (column), e.g. the target product of each WebShop
    goal. Goals of one cluster are not independent draws (two goals for the same product tend to
    succeed or fail together), so the resampling draws whole clusters with replacement instead of
    goals, crossed with the seeds as in :func:`bootstrap_ci`; each resample's value is the mean over
    every cell of the drawn seeds and of all goals of the drawn clusters (clusters of unequal size
    weigh by their number of goals, as in the point estimate). NaN cells are left out of every mean,
    a resample with no value at all is dropped, and ``n`` counts the episodes.

    Clusters are numbered in order of first appearance and drawn with the same generator calls as
    :func:`bootstrap_ci` draws goals, so with every cluster of size 1 the two give the same interval.
    With a single cluster nothing varies between resamples but the seeds: with one seed the interval
    is the point (the same as :func:`bootstrap_ci` on one goal); there is no between-cluster
    information to widen it.
    """
    data = np.asarray(table, dtype=float)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2:
        raise ValueError(f"cluster_bootstrap_ci expects a seeds x goals table, got shape {data.shape}")
    n_seeds, n_goals = data.shape
    index, n_clusters = _cluster_index(clusters, n_goals)
    n = int(np.isfinite(data).sum())
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(np.nanmean(data))
    if n == 1:
        return Estimate(mean, mean, mean, 1)
    # per seed and cluster: the sum and the number of the finite cells
    valid = np.isfinite(data)
    sums = np.zeros((n_seeds, n_clusters))
    counts = np.zeros((n_seeds, n_clusters))
    np.add.at(sums.T, index, np.where(valid, data, 0.0).T)
    np.add.at(counts.T, index, valid.T.astype(float))
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    cols = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    total = sums[rows[:, :, None], cols[:, None, :]].sum(axis=(-2, -1))
    count = counts[rows[:, :, None], cols[:, None, :]].sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    means = means[np.isfinite(means)]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return Estimate(mean, float(lo), float(hi), n)


def paired_cluster_bootstrap_ci(
    table: Sequence[Sequence[float]] | np.ndarray,
    reference: Sequence[Sequence[float]] | np.ndarray,
    clusters: Sequence[Hashable],
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """Mean paired difference ``table - reference`` with its cluster bootstrap interval.

    As :func:`paired_bootstrap_ci`, but whole clusters of goals are resampled
    (:func:`cluster_bootstrap_ci` on the difference table): both agents get the same drawn seeds
    and clusters. A cell missing in either table is left out; ``n`` counts the pairs.
    """
    a, b = _paired_tables(table, reference)
    return cluster_bootstrap_ci(a - b, clusters, n_boot=n_boot, level=level, seed=seed)
