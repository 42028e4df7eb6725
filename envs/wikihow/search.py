"""BM25 search over every article title the simulated site knows (bm25s).

The corpus is all task articles, every article reachable from author and category pages,
and the 11,424 distinct real wikiHow titles used as distractors. An exact title match is
put first, as the real app does.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from rlem_gym.envs.common import top_k_positive

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric tokens (the same for corpus and queries)."""
    return _TOKEN.findall(text.lower())


class TitleSearch:
    """A BM25 index of titles with a small LRU cache of query results."""

    def __init__(self, titles: list[str], cache_size: int = 512) -> None:
        import bm25s

        self.titles = list(titles)
        self._by_lower = {t.lower(): i for i, t in enumerate(self.titles)}
        corpus = [tokenize("how to " + t) for t in self.titles]
        self._vocab = {tok for doc in corpus for tok in doc}
        self._bm25 = bm25s.BM25()
        self._bm25.index(corpus, show_progress=False)
        self._cache: OrderedDict[tuple[str, int], list[str]] = OrderedDict()
        self._cache_size = cache_size

    def search(self, query: str, k: int = 20) -> list[str]:
        """The top-``k`` titles for ``query`` (an exact title match first); [] if nothing matches."""
        key = (query.strip().lower(), k)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return list(hit)
        toks = [t for t in tokenize(query) if t in self._vocab]
        result: list[str] = []
        if toks:
            top = top_k_positive(self._bm25.get_scores(toks), k)  # by score, ties by corpus order
            result = [self.titles[int(d)] for d in top]
        q = key[0]
        q = q[len("how to ") :] if q.startswith("how to ") else q
        q = q.strip(" \"'.")
        exact = self._by_lower.get(q)
        if exact is not None:
            title = self.titles[exact]
            result = [title] + [t for t in result if t != title]
            result = result[:k]
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return list(result)
