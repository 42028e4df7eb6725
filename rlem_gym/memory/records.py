"""The memory's data types and errors: keys' records, their action tables, retrieval hits.

Shared by :mod:`.core` (the :class:`~rlem_gym.memory.ExperienceMemory`), :mod:`.persistence`,
:mod:`.pool_import` and :mod:`.inspect`; it imports nothing of the memory, only the situation and
key types of :mod:`rlem_gym.trajectory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from rlem_gym.trajectory import LAST_ACTIONS, MemoryKey, Situation

__all__ = [
    "ActionStats",
    "EmbedderMismatchError",
    "MemoryFormatError",
    "MemoryKey",
    "Record",
    "Retrieved",
    "Situation",
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
    """One memory entry: the situation of its latest visit, and its action table.

    ``situation`` is the :class:`~rlem_gym.trajectory.Situation` of the **most recent** visit, so
    an exemplar shows the context (last actions, rewards, valid actions) of the latest experience;
    its key fields never change, and ``key`` is its memory key. With double Q-learning, ``tables``
    holds the two tables A and B and ``actions`` is their merge (average Q over the tables that
    hold the action, summed visits).
    """

    id: int
    situation: Situation
    actions: dict[str, ActionStats] = field(default_factory=dict)
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
    key: MemoryKey = field(init=False)
    """The memory key ``(task, observation, instruction)`` of ``situation``."""

    def __post_init__(self) -> None:
        self.key = self.situation.key

    def revisit(self, situation: Situation) -> None:
        """Take the context of a new visit to this key (at most the last 5 actions are kept)."""
        if situation.key != self.key:
            raise ValueError(f"record #{self.id} is keyed by {self.key!r}, not by the situation's key")
        self.situation = replace(situation, last_actions=tuple(situation.last_actions)[-LAST_ACTIONS:])

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
