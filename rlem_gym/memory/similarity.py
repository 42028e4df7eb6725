"""Retrieval similarity of two memory keys: lam * task similarity + (1 - lam) * observation similarity.

A :class:`Matcher` is what makes the memory env-agnostic. It says

* which categorical *observation feature* a key has (the WebShop page type, the WikiHow
  instruction pattern); two keys' observation similarity is 1 when the features are equal, else 0;
* how similar two tasks are (a cosine of sentence embeddings, or a normalised LCS of commands);
* which embedder, if any, the memory should use to index tasks in FAISS.

The per-env parts are injected functions (``page_type_fn``, ``pattern_fn``) so this module and the
memory never import an env. Both paper matchers are here: :class:`WebShopMatcher`
("pgpat+insrel") and :class:`WikiHowMatcher` ("lcs+inspat").
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
from rapidfuzz.distance import LCSseq

from rlem_gym.memory.embeddings import Embedder, embedder_identity
from rlem_gym.trajectory import MemoryKey


@functools.lru_cache(maxsize=8192)
def _words(text: str) -> tuple[str, ...]:
    """The lower-cased whitespace tokens of ``text`` (cached: stored tasks are compared on every query)."""
    return tuple(text.lower().split())


def lcs_similarity(a: str, b: str, unit: str = "word") -> float:
    """Normalised longest-common-subsequence similarity in [0, 1]: LCS(a, b) / max(len(a), len(b)).

    ``unit="word"`` (default) compares lower-cased whitespace tokens, so two task commands built
    from the same template but naming different articles score well below 1; ``unit="char"``
    compares characters. Two empty strings score 1. Uses rapidfuzz's LCSseq.
    """
    if unit == "word":
        return float(LCSseq.normalized_similarity(_words(a), _words(b)))
    if unit == "char":
        return float(LCSseq.normalized_similarity(a, b))
    raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


class Matcher:
    """Base similarity: ``score(query, record) -> (combined, task_sim, obs_sim)``.

    Subclasses define :meth:`obs_feature` and :meth:`task_similarities`. ``embedder`` (or None)
    is what the memory uses to put task texts into FAISS; ``exact_task_from_vectors`` says whether
    the cosine of those stored vectors *is* the task similarity (WebShop) or only a proxy used to
    find candidates (WikiHow with an embedder).
    """

    name: str = "matcher"
    lam: float = 0.5
    embedder: Embedder | None = None
    exact_task_from_vectors: bool = False

    def obs_feature(self, key: MemoryKey) -> str:
        """The categorical feature whose equality is the observation similarity."""
        raise NotImplementedError

    def task_similarities(
        self,
        query_task: str,
        tasks: Sequence[str],
        query_vec: np.ndarray | None = None,
        vecs: np.ndarray | None = None,
    ) -> np.ndarray:
        """Task similarity of ``query_task`` with each of ``tasks`` (float64 array).

        ``query_vec`` / ``vecs`` are the stored embeddings of the same texts when the memory has
        them; a matcher that needs embeddings encodes whatever is not given.
        """
        raise NotImplementedError

    def combine(self, task_sim: np.ndarray | float, obs_sim: np.ndarray | float) -> np.ndarray | float:
        """lam * task + (1 - lam) * obs."""
        return self.lam * task_sim + (1.0 - self.lam) * obs_sim

    def score(self, query: MemoryKey, record: MemoryKey) -> tuple[float, float, float]:
        """(combined, task_sim, obs_sim) of two keys, computed exactly."""
        task_sim = float(self.task_similarities(query.task, [record.task])[0])
        obs_sim = 1.0 if self.obs_feature(query) == self.obs_feature(record) else 0.0
        return float(self.combine(task_sim, obs_sim)), task_sim, obs_sim

    def describe(self) -> dict:
        """A JSON-able description saved with a memory (name, lam, embedder)."""
        return {"name": self.name, "lam": self.lam, "embedder": embedder_identity(self.embedder)}


def _check_lam(lam: float) -> float:
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    return float(lam)


class WebShopMatcher(Matcher):
    """The paper's WebShop matcher ("pgpat+insrel").

    obs similarity = 1 when both observations are pages of the same type (``page_type_fn``,
    e.g. ``rlem_gym.envs.webshop.page_type``); task similarity = the cosine of the sentence
    embeddings of the two instructions (a real cosine, unlike the official matcher's constant 1.0).
    """

    name = "webshop:pgpat+insrel"
    exact_task_from_vectors = True

    def __init__(self, embedder: Embedder, page_type_fn: Callable[[str], str], lam: float = 0.5) -> None:
        if embedder is None:
            raise ValueError("WebShopMatcher needs an embedder: pass rlem_gym.memory.embeddings.default_embedder()")
        self.embedder = embedder
        self.page_type_fn = page_type_fn
        self.lam = _check_lam(lam)

    def obs_feature(self, key: MemoryKey) -> str:
        return str(self.page_type_fn(key.observation))

    def task_similarities(self, query_task, tasks, query_vec=None, vecs=None):
        if query_vec is None:
            query_vec = self.embedder.encode([query_task])[0]
        if vecs is None:
            vecs = self.embedder.encode(list(tasks))
        return np.clip(vecs.astype(np.float64) @ query_vec.astype(np.float64), -1.0, 1.0)


class WikiHowMatcher(Matcher):
    """The paper's WikiHow matcher ("lcs+inspat").

    task similarity = normalised LCS of the task commands (:func:`lcs_similarity`); obs similarity
    = 1 when the current instructions have the same pattern once their slots are masked
    (``pattern_fn``, e.g. ``rlem_gym.envs.wikihow.instruction_pattern``). With an ``embedder``
    the memory uses FAISS on task embeddings to pick candidates, which are then re-scored with
    the exact LCS; without one it scores every distinct task with LCS (fast: tasks repeat).
    """

    name = "wikihow:lcs+inspat"
    exact_task_from_vectors = False

    def __init__(
        self,
        pattern_fn: Callable[[str], str],
        lam: float = 0.5,
        embedder: Embedder | None = None,
        unit: str = "word",
    ) -> None:
        self.pattern_fn = pattern_fn
        self.lam = _check_lam(lam)
        self.embedder = embedder
        self.unit = unit
        lcs_similarity("", "", unit)  # validate unit early

    def obs_feature(self, key: MemoryKey) -> str:
        return str(self.pattern_fn(key.instruction))

    def task_similarities(self, query_task, tasks, query_vec=None, vecs=None):
        sim = LCSseq.normalized_similarity
        if self.unit == "word":
            query = _words(query_task)
            return np.array([sim(query, _words(t)) for t in tasks], dtype=np.float64)
        return np.array([sim(query_task, t) for t in tasks], dtype=np.float64)
