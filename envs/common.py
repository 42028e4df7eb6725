"""Small helpers both env packages share: top-k ranking of search scores and reset-option checks."""

from __future__ import annotations

from typing import Any

import numpy as np


def top_k_positive(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest positive ``scores``, best first, ties by position (lowest first).

    Exact at the cut-off: among scores tied with the k-th best, the lowest positions are kept.
    """
    scores = np.asarray(scores)
    hits = np.flatnonzero(scores > 0)
    if k <= 0:
        return hits[:0]
    if len(hits) > k:
        hit_scores = scores[hits]
        kth = np.partition(hit_scores, len(hits) - k)[len(hits) - k]
        above = hits[hit_scores > kth]
        ties = hits[hit_scores == kth][: k - len(above)]
        hits = np.concatenate([above, ties])
    return hits[np.lexsort((hits, -scores[hits]))]


def int_option(value: Any, name: str, n: int) -> int:
    """Check a ``reset(options=...)`` index: an int (not a bool) in ``0..n-1``; ValueError otherwise."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"reset option {name} must be an int in 0..{n - 1}, got {value!r}")
    value = int(value)
    if not 0 <= value < n:
        raise ValueError(f"reset option {name}={value} is out of range 0..{n - 1}")
    return value


def check_option_keys(options: dict[str, Any], known: tuple[str, ...], env_name: str) -> None:
    """Refuse a ``reset(options=...)`` key this env does not read (ValueError naming the ones it does),
    so that a misspelt or foreign option never plays a random task silently."""
    unknown = sorted(str(k) for k in options if k not in known)
    if unknown:
        raise ValueError(f"{env_name} has no reset option {', '.join(map(repr, unknown))}: use {' or '.join(known)}")
