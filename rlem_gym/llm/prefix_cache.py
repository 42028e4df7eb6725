"""A RAM store of KV-cache snapshots, keyed by the tokens they hold, for prompts that share a prefix.

llama.cpp keeps one sequence of evaluated tokens per context, so a prompt reuses only what it
shares with the call just before it. Agents whose calls interleave (the rows of a benchmark, one
episode after another) or whose prompts share a prefix with an *earlier* call (the same two
memory records retrieved again on a later goal) would prefill that prefix again. A
:class:`PrefixCache` keeps the sequence state after each call (the KV cells of its tokens, about
12 KB a token for Qwen2.5-0.5B), and a new call starts from the snapshot that shares the longest
prefix with its prompt, when that beats the live context.

Eviction is least-recently-used by bytes. A snapshot whose tokens are a prefix of a newer one's is
dropped, since the newer one serves every prompt it would.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two 1-D integer arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


@dataclass(frozen=True)
class Snapshot:
    """One saved sequence state: the tokens it holds and the backend's opaque bytes for them."""

    tokens: np.ndarray
    data: bytes

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.tokens.nbytes


class PrefixCache:
    """Snapshots of evaluated token sequences, at most ``capacity_bytes`` in all.

    Args:
        capacity_bytes: the most bytes the snapshots may hold (0 = keep none).
    """

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.capacity_bytes = int(capacity_bytes)
        self._items: "OrderedDict[int, Snapshot]" = OrderedDict()
        self._next_id = 0
        self.nbytes = 0
        self.hits = 0
        self.hit_tokens = 0

    def __len__(self) -> int:
        return len(self._items)

    def longest(self, tokens: Sequence[int] | np.ndarray) -> tuple[int, Snapshot | None]:
        """The snapshot sharing the longest prefix with ``tokens``, and that length (0, None when none)."""
        query = np.asarray(tokens, dtype=np.int64)
        best_n, best_key = 0, None
        for key, snap in self._items.items():
            n = common_prefix(snap.tokens, query)
            if n > best_n:
                best_n, best_key = n, key
        if best_key is None:
            return 0, None
        self._items.move_to_end(best_key)  # recently used
        return best_n, self._items[best_key]

    def covers(self, tokens: Sequence[int] | np.ndarray) -> bool:
        """Whether some snapshot already holds all of ``tokens`` (storing them again would add nothing)."""
        query = np.asarray(tokens, dtype=np.int64)
        return any(
            len(s.tokens) >= len(query) and common_prefix(s.tokens, query) == len(query) for s in self._items.values()
        )

    def put(self, tokens: Sequence[int] | np.ndarray, data: bytes) -> bool:
        """Keep a snapshot of ``tokens``; returns False when it does not fit or adds nothing."""
        snap = Snapshot(np.asarray(tokens, dtype=np.int64).copy(), bytes(data))
        if snap.nbytes > self.capacity_bytes or len(snap.tokens) == 0 or self.covers(snap.tokens):
            return False
        for key in [
            k
            for k, s in self._items.items()
            if len(s.tokens) <= len(snap.tokens) and common_prefix(s.tokens, snap.tokens) == len(s.tokens)
        ]:
            self._drop(key)  # a prefix of the new one: the new one serves all it served
        while self._items and self.nbytes + snap.nbytes > self.capacity_bytes:
            self._drop(next(iter(self._items)))  # least recently used
        self._items[self._next_id] = snap
        self._next_id += 1
        self.nbytes += snap.nbytes
        return True

    def _drop(self, key: int) -> None:
        self.nbytes -= self._items.pop(key).nbytes

    def clear(self) -> None:
        """Drop every snapshot."""
        self._items.clear()
        self.nbytes = 0
