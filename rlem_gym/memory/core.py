"""The Rememberer's experience memory: records keyed by (task, observation), learned by Q-learning.

One :class:`~.records.Record` per :class:`~.similarity.MemoryKey`. Each holds an action table
(action -> :class:`~.records.ActionStats`: Q, visits, last reward, latest reason) and the prompt
context of its most recent visit. :meth:`ExperienceMemory.update` applies the RLEM targets of
:mod:`.qlearning` to a finished episode; :meth:`ExperienceMemory.retrieve` returns the k records
most similar under the injected :class:`~.similarity.Matcher`.

How retrieval works: with an embedding matcher (WebShop), every record is a row of a FAISS index
(:mod:`.index`) whose inner product is the combined similarity; the top candidates are re-scored
exactly. Without embeddings (WikiHow's LCS matcher) the memory scores each *distinct task* once
(tasks repeat across many records) and ranks (task, pattern) groups. Task texts are encoded once,
at insert (one batch per update / import / load).

The memory never freezes: at ``capacity`` records it evicts (default: the fewest visits, then the
oldest), and at ``action_capacity`` actions a record drops the action with the lowest |Q| and the
fewest visits. Both policies are configurable.

Dependencies point one way: this module delegates saving/loading to :mod:`.persistence` and pool
parsing to :mod:`.pool_import`, which never import it back (they get the class to build as an
argument). It imports no env: the per-env parts come in through the matcher.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import replace
from typing import Any, Callable, Literal, Sequence

import numpy as np

from rlem_gym.memory import persistence, pool_import, qlearning
from rlem_gym.memory.embeddings import embedder_identity
from rlem_gym.memory.records import ActionStats, EmbedderMismatchError, Record, Retrieved, merge_tables
from rlem_gym.memory.similarity import Matcher, MemoryKey
from rlem_gym.trajectory import Situation, Step

__all__ = [
    "ACTION_EVICTION_POLICIES",
    "EVICTION_POLICIES",
    "ExperienceMemory",
    "import_official_pool",
]


# --------------------------------------------------------------------------- eviction policies
RecordPolicy = Callable[[Record], Any]
ActionPolicy = Callable[[str, ActionStats], Any]

#: record eviction policies: the record with the smallest key is evicted first
EVICTION_POLICIES: dict[str, RecordPolicy] = {
    "lowest_visits": lambda r: (r.visits, r.inserted_at),
    "oldest": lambda r: (r.inserted_at,),
    "least_recent": lambda r: (r.updated_at, r.inserted_at),
}
#: action eviction policies: the action with the smallest key is dropped first
ACTION_EVICTION_POLICIES: dict[str, ActionPolicy] = {
    "lowest_abs_q": lambda a, s: (abs(s.q), s.visits),
    "fewest_visits": lambda a, s: (s.visits, abs(s.q)),
}


def _resolve(policy, table: dict, what: str):
    if callable(policy):
        return policy
    try:
        return table[policy]
    except KeyError:
        raise ValueError(f"unknown {what} policy {policy!r}: use one of {sorted(table)} or a callable") from None


_MATCHER_HINT = (
    "pass the env's matcher: ExperienceMemory(get_adapter({env!r}).make_matcher()) with "
    "`from rlem_gym.agents import get_adapter` (WebShop loads the MiniLM embedder), or build one from "
    "rlem_gym.memory: WebShopMatcher(embedder, page_type_fn) / WikiHowMatcher(pattern_fn); "
    "make_agent('rememberer', llm, {env!r}) builds the memory for you"
)


def _check_matcher(matcher: Any) -> None:
    """A clear error for the two easy mistakes: no matcher, or an env name instead of one."""
    if matcher is None:
        raise TypeError(
            "ExperienceMemory() needs a matcher (how similar two keys are): " + _MATCHER_HINT.format(env="webshop")
        )
    if isinstance(matcher, str):
        env = matcher if matcher in ("webshop", "wikihow") else "webshop"
        raise TypeError(
            f"ExperienceMemory({matcher!r}): the first argument is a matcher, not an env name; "
            + _MATCHER_HINT.format(env=env)
        )
    missing = [a for a in ("obs_feature", "task_similarities", "combine", "embedder") if not hasattr(matcher, a)]
    if missing:
        raise TypeError(
            f"ExperienceMemory's matcher must be a rlem_gym.memory.Matcher, got {type(matcher).__name__} "
            f"(no {', '.join(missing)}): " + _MATCHER_HINT.format(env="webshop")
        )


def _situation_of(task: str, step: Step) -> Situation:
    """The situation of ``step`` in the episode of ``task`` (a step may leave its task empty)."""
    if not isinstance(step, Step):
        raise TypeError(f"memory.update takes a list of Step; got a {type(step).__name__}")
    situation = step.situation
    if situation.task == task:
        return situation
    if situation.task:
        raise ValueError(
            f"a step of task {situation.task[:60]!r} was given to update() for task {task[:60]!r}: "
            "an episode's steps share its task"
        )
    return replace(situation, task=task)


class ExperienceMemory:
    """The RLEM experience memory (see the module docstring).

    Arguments:
        matcher: the similarity (:class:`~rlem_gym.memory.similarity.WebShopMatcher`,
            :class:`~rlem_gym.memory.similarity.WikiHowMatcher` or your own); the env's is
            ``rlem_gym.agents.get_adapter("webshop").make_matcher()``. Required: without one (or
            with an env name instead) the TypeError says what to pass.
        capacity: at most this many records (paper: 500); further inserts evict.
        action_capacity: at most this many actions per record (per table; paper: 20).
        n_step: None = full Monte-Carlo return (paper default), 1 = one-step, n = n-step.
        gamma: discount in [0, 1] (paper: 1.0).
        update_mode: "mean" (alpha = 1/visits, paper) or "const" (alpha = ``lr``).
        lr: the constant step size of "const" mode.
        double_q: keep two tables and update one at random per step (van Hasselt).
        index: "flat" (exact), "ivf" or "hnsw" (approximate, for large memories); used when the
            matcher has an embedder.
        eviction: "lowest_visits" (default), "oldest", "least_recent", or ``f(record) -> key``
            (smallest evicted first; the key may change only when the record is updated).
        action_eviction: "lowest_abs_q" (default), "fewest_visits", or ``f(action, stats) -> key``.
        seed: seeds the double-Q table choice.
        index_options: extra :class:`~rlem_gym.memory.index.VectorIndex` options (nprobe, ...).
        candidates: how many FAISS candidates to re-score per requested hit (at least k + 16).
        learning: ``"q_learning"`` (the paper's) or ``"success_replay"``: an ablation that stores
            only the episodes whose return is > 0, every step's action with Q = 1.0 (no values
            learned, no failures kept; see :data:`~.qlearning.LEARNING_RULES`).
    """

    def __init__(
        self,
        matcher: Matcher | None = None,
        *,
        capacity: int = 500,
        action_capacity: int = 20,
        n_step: int | None = None,
        gamma: float = 1.0,
        update_mode: Literal["mean", "const"] = "mean",
        lr: float = 0.1,
        double_q: bool = False,
        index: Literal["flat", "ivf", "hnsw"] = "flat",
        eviction: str | RecordPolicy = "lowest_visits",
        action_eviction: str | ActionPolicy = "lowest_abs_q",
        seed: int = 0,
        index_options: dict | None = None,
        candidates: int = 4,
        learning: str = "q_learning",
    ) -> None:
        _check_matcher(matcher)
        qlearning.check_learning(learning)
        if capacity < 1 or action_capacity < 1:
            raise ValueError("capacity and action_capacity must be >= 1")
        qlearning.check_n_step(n_step)
        qlearning.check_gamma(gamma)
        qlearning.check_update_mode(update_mode)
        self.matcher = matcher
        self.capacity = int(capacity)
        self.action_capacity = int(action_capacity)
        self.n_step = n_step
        self.gamma = float(gamma)
        self.update_mode = update_mode
        self.learning = learning
        self.lr = float(lr)
        self.double_q = bool(double_q)
        self.index_kind = index
        self.eviction = eviction
        self.action_eviction = action_eviction
        self._evict_key = _resolve(eviction, EVICTION_POLICIES, "eviction")
        self._action_evict_key = _resolve(action_eviction, ACTION_EVICTION_POLICIES, "action_eviction")
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.index_options = dict(index_options or {})
        self.candidates = int(candidates)
        self._records: dict[int, Record] = {}
        self._by_key: dict[MemoryKey, int] = {}
        self._next_id = 0
        self._tick = 0
        self._heap: list[tuple[Any, int, int]] = []  # (policy key, id, tick) lazy min-heap
        self._heap_seq = itertools.count()
        self._task_count: dict[str, int] = {}
        self._feat_ids: dict[str, int] = {}
        self._feat_canon: dict[str, str] = {}
        self._embedder = matcher.embedder
        self._index = None
        self._task_vec: dict[str, np.ndarray] = {}  # task -> its vector, while the task has records
        self._groups: dict[str, dict[str, list[int]]] = {}  # task -> feature -> ids (scan path)
        self._pending: list | None = None
        if self._embedder is not None:
            from rlem_gym.memory.index import VectorIndex

            self._index = VectorIndex(self._embedder.dim, index, lam=matcher.lam, **self.index_options)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: MemoryKey) -> bool:
        return key in self._by_key

    def __repr__(self) -> str:
        return (
            f"ExperienceMemory({len(self)}/{self.capacity} records, matcher={self.matcher.name!r}, "
            f"n_step={self.n_step}, gamma={self.gamma}, mode={self.update_mode}, double_q={self.double_q}, "
            f"index={self.index_kind!r}"
            + ("" if self.learning == "q_learning" else f", learning={self.learning!r}")
            + ")"
        )

    def records(self) -> list[Record]:
        """All records, in insertion order."""
        return list(self._records.values())

    def get(self, key: MemoryKey) -> Record | None:
        """The record of exactly this key, or None."""
        rid = self._by_key.get(key)
        return None if rid is None else self._records[rid]

    def config(self) -> dict:
        """The constructor settings, JSON-able (callable policies are saved as their name, 'custom')."""
        return {
            "capacity": self.capacity,
            "action_capacity": self.action_capacity,
            "n_step": self.n_step,
            "gamma": self.gamma,
            "update_mode": self.update_mode,
            "lr": self.lr,
            "double_q": self.double_q,
            "index": self.index_kind,
            "eviction": self.eviction if isinstance(self.eviction, str) else "custom",
            "action_eviction": self.action_eviction if isinstance(self.action_eviction, str) else "custom",
            "seed": self.seed,
            "index_options": self.index_options,
            "candidates": self.candidates,
            "learning": self.learning,
        }

    # ------------------------------------------------------------------ learning
    def update(self, task: str, trajectory: Sequence[Step]) -> None:
        """Learn from a finished episode: apply the Q-learning target of every step.

        Bootstrap values are read from the memory as it was before this episode (a snapshot),
        so revisiting a key within the episode does not feed on its own update. With
        ``learning="success_replay"`` an episode whose return is not > 0 is dropped, and a kept
        one stores each step's action with Q = 1.0.
        """
        if not trajectory:
            return
        situations = [_situation_of(task, s) for s in trajectory]
        keys = [sit.key for sit in situations]
        rewards = [float(s.reward) for s in trajectory]
        T = len(trajectory)
        choice = [qlearning.choose_table(self.rng) if self.double_q else 0 for _ in range(T)]
        if self.learning == "success_replay":
            targets = qlearning.success_replay_targets(rewards)
            if targets is None:
                return
        else:
            bootstrap = None
            if self.n_step is not None:
                bootstrap = [
                    self._bootstrap_value(keys[t + self.n_step], choice[t]) if t + self.n_step < T else 0.0
                    for t in range(T)
                ]
            targets = qlearning.compute_targets(rewards, self.n_step, self.gamma, bootstrap)
        for t, step in enumerate(trajectory):
            rec = self.get(keys[t]) or self._insert(situations[t])
            self._tick += 1
            rec.visits += 1
            rec.updated_at = self._tick
            rec.revisit(situations[t])
            table = rec.tables[choice[t]] if rec.tables is not None else rec.actions
            self._update_action(table, step.action, targets[t], rewards[t], step.reason)
            if rec.tables is not None:
                rec.actions = merge_tables(rec.tables)
            self._push(rec)

    def _bootstrap_value(self, key: MemoryKey, table: int) -> float:
        rec = self.get(key)
        if rec is None:
            return 0.0  # max over an unseen next key is 0
        if rec.tables is not None:
            q = [{a: s.q for a, s in tbl.items()} for tbl in rec.tables]
            return qlearning.double_q_value(q[table], q[1 - table])
        return qlearning.state_value({a: s.q for a, s in rec.actions.items()})

    def _trim_actions(self, table: dict[str, ActionStats], room: int = 0) -> None:
        """Drop actions by the action eviction policy until ``room`` more fit within ``action_capacity``."""
        excess = len(table) - (self.action_capacity - room)
        if excess > 0:  # nsmallest is stable: ties drop the earlier-inserted action, as min() did
            for a in heapq.nsmallest(excess, table, key=lambda a: self._action_evict_key(a, table[a])):
                del table[a]

    def _update_action(
        self, table: dict[str, ActionStats], action: str, target: float, reward: float, reason: str
    ) -> None:
        st = table.get(action)
        if st is None:
            self._trim_actions(table, room=1)
            table[action] = ActionStats(q=float(target), visits=1, last_reward=reward, reason=reason or "")
            return
        st.visits += 1
        st.q = qlearning.updated_q(st.q, target, st.visits, self.update_mode, self.lr)
        st.last_reward = reward
        if reason:
            st.reason = reason

    # ------------------------------------------------------------------ retrieval
    def retrieve(self, task: str, observation: str, instruction: str = "", k: int = 2) -> list[Retrieved]:
        """The ``k`` records most similar to (task, observation, instruction), best first.

        Scores are the matcher's exact combined similarity; ties go to the older record.
        """
        if k <= 0 or not self._records:
            return []
        query = MemoryKey(task, observation, instruction)
        qfeat = self.matcher.obs_feature(query)
        if self._index is not None:
            hits = self._retrieve_indexed(query, qfeat, k)
        else:
            hits = self._retrieve_scan(query, qfeat, k)
        return hits

    def _retrieve_indexed(self, query: MemoryKey, qfeat: str, k: int) -> list[Retrieved]:
        qvec = self._task_vectors([query.task])[0]
        n_cand = max(self.candidates * k, k + 16)
        ids = self._index.search(qvec, self._feat_ids.get(qfeat, -1), n_cand)
        if len(ids) == 0:
            return []
        recs = [self._records[int(i)] for i in ids]
        if self.matcher.exact_task_from_vectors:
            tsim = self.matcher.task_similarities(
                query.task, [r.key.task for r in recs], qvec, self._index.vectors(ids)
            )
        else:
            tsim = self._task_sims_by_text(query.task, [r.key.task for r in recs])
        osim = np.array([1.0 if r.feature == qfeat else 0.0 for r in recs])
        return self._top(recs, tsim, osim, k)

    def _retrieve_scan(self, query: MemoryKey, qfeat: str, k: int) -> list[Retrieved]:
        tasks = list(self._groups)
        tsims = self.matcher.task_similarities(query.task, tasks)
        scored: list[tuple[float, float, float, list[int]]] = []
        for task, ts in zip(tasks, tsims.tolist()):
            for feat, ids in self._groups[task].items():
                os_ = 1.0 if feat == qfeat else 0.0
                scored.append((float(self.matcher.combine(ts, os_)), ts, os_, ids))
        scored.sort(key=lambda x: -x[0])
        out: list[Retrieved] = []
        for score, tied in itertools.groupby(scored, key=lambda x: x[0]):
            # groups with equal scores interleave: the oldest records (lowest ids) first
            best = heapq.nsmallest(k - len(out), ((rid, ts, os_) for _, ts, os_, ids in tied for rid in ids))
            out += [Retrieved(self._records[rid], score, ts, os_, rid) for rid, ts, os_ in best]
            if len(out) == k:
                break
        return out

    def _task_sims_by_text(self, query_task: str, tasks: list[str]) -> np.ndarray:
        uniq = list(dict.fromkeys(tasks))
        sims = dict(zip(uniq, self.matcher.task_similarities(query_task, uniq).tolist()))
        return np.array([sims[t] for t in tasks])

    def _top(self, recs: list[Record], tsim: np.ndarray, osim: np.ndarray, k: int) -> list[Retrieved]:
        comb = self.matcher.combine(np.asarray(tsim, dtype=np.float64), osim)
        order = sorted(range(len(recs)), key=lambda j: (-comb[j], recs[j].id))[:k]
        return [Retrieved(recs[j], float(comb[j]), float(tsim[j]), float(osim[j]), recs[j].id) for j in order]

    # ------------------------------------------------------------------ inserts / eviction
    def _insert(
        self,
        situation: Situation,
        *,
        vector: np.ndarray | None = None,
        feature: str | None = None,
        inserted_at: int | None = None,
        record_id: int | None = None,
    ) -> Record:
        """Add an empty record (evicting at capacity); the caller fills it, then pushes it on the heap once."""
        key = situation.key
        if self._index is not None and vector is None:
            vector = self._task_vectors([key.task])[0]  # before eviction may drop the task's last record
        while len(self._records) >= self.capacity:
            self._flush_pending()
            self._evict_one()
        if record_id is None:
            record_id = self._next_id
        self._next_id = max(self._next_id, record_id + 1)
        if inserted_at is None:
            self._tick += 1
            inserted_at = self._tick
        feat = self.matcher.obs_feature(key) if feature is None else feature
        feat = self._intern_feature(feat)
        rec = Record(id=record_id, situation=situation, inserted_at=inserted_at, updated_at=inserted_at, feature=feat)
        if self.double_q:
            rec.tables = [{}, {}]
        self._records[record_id] = rec
        self._by_key[key] = record_id
        self._task_count[key.task] = self._task_count.get(key.task, 0) + 1
        if self._index is not None:
            if self._pending is not None:
                self._pending.append((record_id, vector, self._feat_ids[feat]))
            else:
                self._index.add(np.array([record_id]), vector.reshape(1, -1), np.array([self._feat_ids[feat]]))
            if key.task not in self._task_vec:
                self._task_vec[key.task] = np.array(vector, dtype=np.float32)
        else:
            self._groups.setdefault(key.task, {}).setdefault(feat, []).append(record_id)
        return rec

    def _intern_feature(self, feat: str) -> str:
        """Give ``feat`` an int id (for the index) and return one shared string object for it."""
        canon = self._feat_canon.get(feat)
        if canon is None:
            self._feat_ids[feat] = len(self._feat_ids)
            self._feat_canon[feat] = canon = feat
        return canon

    def _push(self, rec: Record) -> None:
        heapq.heappush(self._heap, (self._evict_key(rec), next(self._heap_seq), rec.id))
        if len(self._heap) > 4 * len(self._records) + 64:
            self._heap = [(self._evict_key(r), next(self._heap_seq), r.id) for r in self._records.values()]
            heapq.heapify(self._heap)

    def _evict_one(self) -> None:
        while self._heap:
            key, _, rid = heapq.heappop(self._heap)
            rec = self._records.get(rid)
            if rec is not None and self._evict_key(rec) == key:
                self._remove(rec)
                return
        # heap lost track (a custom policy whose key changed): fall back to a scan
        rec = min(self._records.values(), key=self._evict_key)
        self._remove(rec)

    def evict(self, record_id: int) -> None:
        """Remove one record by id (what capacity eviction does; also for manual pruning)."""
        rec = self._records.get(record_id)
        if rec is None:
            raise KeyError(f"no record with id {record_id}")
        self._remove(rec)

    def _remove(self, rec: Record) -> None:
        del self._records[rec.id]
        del self._by_key[rec.key]
        task = rec.key.task
        n = self._task_count[task] - 1
        if n:
            self._task_count[task] = n
        else:
            del self._task_count[task]
            self._task_vec.pop(task, None)
        if self._index is not None:
            self._index.remove([rec.id])
        else:
            feats = self._groups[task]
            ids = feats[rec.feature]
            ids.remove(rec.id)
            if not ids:
                del feats[rec.feature]
                if not feats:
                    del self._groups[task]

    # ------------------------------------------------------------------ vectors
    def _task_vectors(self, tasks: Sequence[str]) -> np.ndarray:
        """Vectors of ``tasks``: stored ones are reused, the rest encoded in one batch."""
        out = np.empty((len(tasks), self._embedder.dim), dtype=np.float32)
        todo: list[int] = []
        for i, t in enumerate(tasks):
            vec = self._task_vec.get(t)
            if vec is not None:
                out[i] = vec
            else:
                todo.append(i)
        if todo:
            out[todo] = self._embedder.encode([tasks[i] for i in todo])
        return out

    def task_vectors(self) -> tuple[list[str], np.ndarray | None]:
        """(distinct tasks, their stored vectors) for saving; vectors are None without an embedder."""
        tasks = list(self._task_count)
        if self._index is None:
            return tasks, None
        return tasks, self._task_vectors(tasks)

    def _bulk_insert(self, items: list[dict], vectors: dict[str, np.ndarray] | None = None) -> list[Record]:
        """Insert many prepared records (import, load, merge) with one encode batch and one index add.

        Each item has ``situation`` (the record's :class:`~rlem_gym.trajectory.Situation`) and
        optionally ``id``, ``inserted_at``, ``updated_at``, ``visits`` and ``tables`` (list of action
        tables). Capacity is enforced as usual.
        """
        if self._index is not None:
            vectors = dict(vectors or {})
            missing = [t for t in dict.fromkeys(it["situation"].task for it in items) if t not in vectors]
            if missing:
                for t, v in zip(missing, self._task_vectors(missing)):
                    vectors[t] = v
        out = []
        self._pending = []  # index rows added in one batch (flushed before any eviction)
        try:
            for it in items:
                situation: Situation = it["situation"]
                if situation.key in self._by_key:
                    raise ValueError(f"duplicate memory key for task {situation.task[:60]!r}")
                rec = self._insert(
                    situation,
                    vector=None if self._index is None else vectors[situation.task],
                    inserted_at=it.get("inserted_at"),
                    record_id=it.get("id"),
                )
                self._fill(rec, it)
                out.append(rec)
        finally:
            self._flush_pending()
            self._pending = None
        return out

    def _flush_pending(self) -> None:
        pending = self._pending
        if pending:
            ids = np.fromiter((p[0] for p in pending), dtype=np.int64, count=len(pending))
            vecs = np.stack([p[1] for p in pending])
            feats = np.fromiter((p[2] for p in pending), dtype=np.int64, count=len(pending))
            self._index.add(ids, vecs, feats)
            pending.clear()

    def _fill(self, rec: Record, it: dict) -> None:
        tables = it.get("tables") or [{}]
        if self.double_q:
            if len(tables) == 2:
                rec.tables = [dict(tables[0]), dict(tables[1])]
            else:  # a single-table source trains table A
                rec.tables = [dict(tables[0]), {}]
            for tbl in rec.tables:
                self._trim_actions(tbl)
            rec.actions = merge_tables(rec.tables)
        else:
            rec.actions = dict(tables[0]) if len(tables) == 1 else merge_tables(tables)
            self._trim_actions(rec.actions)
        rec.visits = int(it.get("visits", rec.visits))
        rec.updated_at = int(it.get("updated_at", rec.updated_at))
        rec.revisit(it["situation"])
        self._tick = max(self._tick, rec.inserted_at, rec.updated_at)
        self._push(rec)

    # ------------------------------------------------------------------ merge
    def merge(self, other: "ExperienceMemory") -> "ExperienceMemory":
        """Fold ``other`` into this memory (e.g. two training runs); returns self.

        Shared keys: per action, Q becomes the visit-weighted mean and visits add up (per table
        when both memories use double Q; otherwise ``other``'s merged view goes into table A);
        record visits add up, and the context of ``other`` (taken as the newer) wins when it has
        visits. New keys are inserted (capacity eviction applies). Vectors are reused when both
        use the same embedder, else re-encoded.
        """
        if other is self:
            return self
        self._check_same_embedder(other)
        new_items: list[dict] = []
        vectors: dict[str, np.ndarray] = {}
        reuse = other._index is not None and self._index is not None
        for orec in other.records():
            src_tables = orec.tables if (orec.tables is not None and self.double_q) else [orec.actions]
            mine = self.get(orec.key)
            if mine is None:
                new_items.append(
                    {
                        "situation": orec.situation,
                        "tables": [
                            {a: ActionStats(s.q, s.visits, s.last_reward, s.reason) for a, s in t.items()}
                            for t in src_tables
                        ],
                        "visits": orec.visits,
                    }
                )
                if reuse and orec.key.task not in vectors:
                    vectors[orec.key.task] = other._task_vec[orec.key.task]
                continue
            dst_tables = mine.tables if mine.tables is not None else [mine.actions]
            for dst, src in zip(dst_tables, src_tables):
                for a, s in src.items():
                    d = dst.get(a)
                    if d is None:
                        self._trim_actions(dst, room=1)
                        dst[a] = ActionStats(s.q, s.visits, s.last_reward, s.reason)
                    else:
                        d.q = qlearning.merged_q(d.q, d.visits, s.q, s.visits)
                        d.visits += s.visits
                        d.last_reward = s.last_reward
                        d.reason = s.reason or d.reason
            if mine.tables is not None:
                mine.actions = merge_tables(mine.tables)
            if orec.visits:
                mine.revisit(orec.situation)
            mine.visits += orec.visits
            self._tick += 1
            mine.updated_at = self._tick
            self._push(mine)
        self._bulk_insert(new_items, vectors)
        return self

    def _check_same_embedder(self, other: "ExperienceMemory") -> None:
        a, b = embedder_identity(self._embedder), embedder_identity(other._embedder)
        if a is not None and b is not None and a != b:
            raise EmbedderMismatchError(
                f"cannot merge memories built with different embedders ({b['name']}, {b['dim']}-d into {a['name']}, {a['dim']}-d)"
            )

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the memory to directory ``path`` atomically (see :mod:`rlem_gym.memory.persistence`)."""
        persistence.save_memory(self, path)

    @classmethod
    def load(cls, path, matcher: Matcher, **overrides) -> "ExperienceMemory":
        """Read a memory saved by :meth:`save`; ``overrides`` replace saved constructor settings.

        Raises :class:`~rlem_gym.memory.MemoryFormatError` for truncated/corrupted/other-version
        files and :class:`~rlem_gym.memory.EmbedderMismatchError` when ``matcher``'s embedder is not
        the one it was built with.
        """
        return persistence.load_memory(path, matcher, factory=cls, **overrides)


def import_official_pool(
    path, matcher: Matcher, memory: ExperienceMemory | None = None, **memory_kwargs
) -> ExperienceMemory:
    """Load one of the official Rememberer YAML pools (format: :mod:`rlem_gym.memory.pool_import`).

    With ``memory`` the pool is merged into it (visit-weighted Q for shared keys) and ``memory`` is
    returned; otherwise a new memory is built with ``matcher``, ``key_fields`` and ``memory_kwargs``.
    """
    return pool_import.import_official_pool(path, matcher, factory=ExperienceMemory, memory=memory, **memory_kwargs)
