"""The RLEM Q-learning update as pure functions (no memory, no I/O).

:class:`rlem_gym.memory.ExperienceMemory` feeds a finished episode through these: it reads the
bootstrap values out of the memory, asks :func:`compute_targets` for the targets y_t, and applies
:func:`updated_q` to each visited (key, action). Everything here is deterministic given its inputs
(the double-Q table choice takes the caller's ``numpy.random.Generator``).

Targets for a trajectory (o_0, a_0, r_0, ..., o_T) with T = len(rewards):

* full return (``n=None``, the paper's default): y_t = sum_{i>=t} gamma^(i-t) r_i, no bootstrap;
* n-step (``n>=1``; n=1 is one-step Q-learning):
  y_t = sum_{i<m} gamma^i r_{t+i} + gamma^n * V(o_{t+n}) with m = min(n, T-t); the bootstrap term
  is present only when t+n < T (o_T and anything past it is terminal or unknown: value 0).

V(o) = max_a Q(g, o, a) over the memory's action table, and 0 for a key that is not in memory.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np

UpdateMode = Literal["mean", "const"]
#: what the memory learns from an episode: ``"q_learning"`` (the paper's), or ``"success_replay"``
#: (an ablation the paper lacks: only episodes whose return is > 0 are stored, every step's action
#: with the constant value :data:`SUCCESS_VALUE`, so the memory keeps what worked and learns no values)
LEARNING_RULES = ("q_learning", "success_replay")
#: the value a success-replay memory gives every action it stores
SUCCESS_VALUE = 1.0


def discounted_returns(rewards: Sequence[float], gamma: float = 1.0) -> list[float]:
    """Monte-Carlo returns y_t = sum_{i>=t} gamma^(i-t) r_i for every t (the full-return targets)."""
    out = [0.0] * len(rewards)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out


def compute_targets(
    rewards: Sequence[float],
    n: int | None = None,
    gamma: float = 1.0,
    bootstrap: Sequence[float] | None = None,
) -> list[float]:
    """Q-learning targets y_t for every step of an episode.

    ``bootstrap[t]`` is V(o_{t+n}), the value the step-t target bootstraps from (ignored, and may be
    absent, when t+n >= T or ``n`` is None). ``n=None`` gives full returns, ``n=1`` one-step targets.
    """
    check_gamma(gamma)
    check_n_step(n)
    T = len(rewards)
    if n is None:
        return discounted_returns(rewards, gamma)
    if bootstrap is not None and len(bootstrap) < T:
        raise ValueError(f"bootstrap needs one value per step ({T}), got {len(bootstrap)}")
    targets = []
    for t in range(T):
        m = min(n, T - t)
        y = sum((gamma**i) * float(rewards[t + i]) for i in range(m))
        if t + n < T and bootstrap is not None:
            y += (gamma**n) * float(bootstrap[t])
        targets.append(y)
    return targets


def state_value(q_table: Mapping[str, float]) -> float:
    """V(o) = max_a Q(o, a); 0 for an empty (unseen) table."""
    return max(q_table.values()) if q_table else 0.0


def double_q_value(select: Mapping[str, float], evaluate: Mapping[str, float]) -> float:
    """Van Hasselt's double-Q bootstrap: the argmax action of ``select``, valued by ``evaluate``.

    0 when ``select`` is empty or ``evaluate`` has never seen that action. Ties in ``select`` go
    to the action inserted first (dict order), so the choice is deterministic.
    """
    if not select:
        return 0.0
    best = max(select, key=select.__getitem__)
    return float(evaluate.get(best, 0.0))


def choose_table(rng: np.random.Generator) -> int:
    """Which of the two double-Q tables (0 = A, 1 = B) one update trains: a fair coin from ``rng``."""
    return int(rng.integers(2))


def updated_q(q: float, target: float, visits: int, mode: UpdateMode = "mean", lr: float = 0.1) -> float:
    """Q <- Q + alpha (y - Q), with alpha = 1/visits ("mean": a running mean) or ``lr`` ("const").

    ``visits`` counts this update (so the first update of an entry has visits=1 and returns y).
    """
    if mode == "mean":
        if visits < 1:
            raise ValueError(f"visits must be >= 1 in mean mode, got {visits}")
        alpha = 1.0 / visits
    else:
        check_update_mode(mode)
        alpha = lr
    return q + alpha * (target - q)


def merged_q(q_a: float, n_a: int, q_b: float, n_b: int) -> float:
    """Visit-weighted mean of two estimates of the same Q (used to merge two memories).

    The double-Q view of a record is not this: :func:`rlem_gym.memory.merge_tables` averages the
    tables' Q values unweighted.
    """
    total = n_a + n_b
    if total <= 0:
        return (q_a + q_b) / 2.0
    return (q_a * n_a + q_b * n_b) / total


def check_gamma(gamma: float) -> None:
    """Raise ValueError unless the discount ``gamma`` is in [0, 1]."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def check_n_step(n: int | None) -> None:
    """Raise ValueError unless ``n`` is None (full return) or >= 1."""
    if n is not None and n < 1:
        raise ValueError(f"n_step must be None (full return) or >= 1, got {n}")


def success_replay_targets(rewards: Sequence[float]) -> list[float] | None:
    """Success replay's targets: :data:`SUCCESS_VALUE` for every step of an episode whose return is > 0, else None."""
    if sum(float(r) for r in rewards) <= 0:
        return None
    return [SUCCESS_VALUE] * len(rewards)


def check_learning(rule: str) -> None:
    """Raise ValueError unless ``rule`` is one of :data:`LEARNING_RULES`."""
    if rule not in LEARNING_RULES:
        raise ValueError(f"unknown learning {rule!r}: use one of {', '.join(LEARNING_RULES)}")


def check_update_mode(mode: str) -> None:
    """Raise ValueError unless ``mode`` is "mean" or "const"."""
    if mode not in ("mean", "const"):
        raise ValueError(f"update_mode must be 'mean' or 'const', got {mode!r}")
