"""The memory's data types and errors: keys' records, their action tables, retrieval hits.

Shared by :mod:`.core` (the :class:`~rlem_gym.memory.ExperienceMemory`), :mod:`.persistence`,
:mod:`.pool_import` and :mod:`.inspect`; it imports nothing of the memory but the key type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rlem_gym.memory.similarity import MemoryKey

__all__ = [
    "ActionStats",
    "EmbedderMismatchError",
    "MemoryFormatError",
    "MemoryKey",
    "Record",
    "Retrieved",
    "merge_tables",
]


class MemoryFormatError(ValueError):
    """A saved memory (or pool file) is truncated, corrupted, of another format version, or mismatched."""


class EmbedderMismatchError(MemoryFormatError):
    """A saved memory was built with another embedder than the matcher's; its vectors are not comparable."""


@dataclass(slots=True)
class ActionStats:
    """One entry of a record's action table."""

    q: float
    """The Q value estimate."""
    visits: int = 1
    """How many updates this (key, action) received."""
    last_reward: float = 0.0
    """The immediate reward of the latest update."""
    reason: str = ""
    """The latest non-empty reason text given for the action."""


@dataclass(slots=True, eq=False)
class Record:
    """One memory entry: a key, its action table, and the prompt context of its latest visit.

    ``last_actions``, ``last_reward``, ``total_reward`` and ``available_actions`` come from the
    :class:`~rlem_gym.trajectory.Step` of the **most recent** visit (so the exemplar context is that
    of the latest experience). With double Q-learning, ``tables`` holds the two tables A and B and
    ``actions`` is their merge (average Q over the tables that hold the action, summed visits).
    """

    id: int
    key: MemoryKey
    actions: dict[str, ActionStats] = field(default_factory=dict)
    last_actions: tuple[str, ...] = ()
    last_reward: float = 0.0
    total_reward: float = 0.0
    available_actions: tuple[str, ...] = ()
    visits: int = 0
    """How many episode steps visited this key (imports/merges add their counts)."""
    inserted_at: int = 0
    """The memory's logical clock at insertion (monotonic; used for "oldest first")."""
    updated_at: int = 0
    """The memory's logical clock at the latest update."""
    feature: str = ""
    """The matcher's observation feature of the key (page type / instruction pattern), computed at insert."""
    tables: list[dict[str, ActionStats]] | None = None
    """Double-Q tables [A, B]; None with a single table (then ``actions`` is the table)."""

    def sorted_actions(self) -> list[tuple[str, ActionStats]]:
        """The actions by Q, highest first (ties keep insertion order)."""
        return sorted(self.actions.items(), key=lambda kv: -kv[1].q)


@dataclass(frozen=True, slots=True)
class Retrieved:
    """One retrieval hit: the (live) record and its exact similarity to the query."""

    record: Record
    score: float
    task_score: float
    obs_score: float
    record_id: int


def merge_tables(tables: Sequence[dict[str, ActionStats]]) -> dict[str, ActionStats]:
    """The double-Q view: average Q over the tables holding an action, summed visits, latest reason."""
    out: dict[str, ActionStats] = {}
    seen: dict[str, list[ActionStats]] = {}
    for tbl in tables:
        for a, s in tbl.items():
            seen.setdefault(a, []).append(s)
    for a, stats in seen.items():
        main = max(stats, key=lambda s: s.visits)
        reason = next((s.reason for s in sorted(stats, key=lambda s: -s.visits) if s.reason), "")
        out[a] = ActionStats(
            q=sum(s.q for s in stats) / len(stats),
            visits=sum(s.visits for s in stats),
            last_reward=main.last_reward,
            reason=reason,
        )
    return out
