"""BM25 product search for WebShop (bm25s), built once per catalog and cached on disk.

What it is for: ``search[keywords]`` returns the top 50 products, as WebShop's Lucene/pyserini engine
does, without Java. The indexed text per product is WebShop's: title, description, first bullet
point and options (:func:`rlem_gym.envs.webshop.catalog.search_text`).

Analysis approximates pyserini's default English analyzer: lower-case, word tokens (keeping
``6.76`` and ``l'eau`` whole, dropping a possessive ``'s``), Lucene's 33 English stop words, Porter
stemming (PyStemmer's ``porter``). Scoring is Lucene's BM25 with pyserini's defaults k1 = 0.9,
b = 0.4. Only products that match at least one query term are returned (as Lucene does), so a
search can return fewer than 50. Ties are broken by catalog position, so results are deterministic.

Caching: the index is keyed by the sha256 of the product file and the analyzer version. It is saved
next to the data (``<data_dir>/.rlem_gym_index_<key>/``) when that folder is writable and is not the
package's own data folder, otherwise under ``webshop/`` in the rlem-gym cache root
(:func:`rlem_gym.cache.cache_root`: ``$RLEM_GYM_CACHE_DIR``, else ``~/.cache/rlem-gym``). Within a process an index is built or loaded once and shared by every env.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from rlem_gym.atomic import fsync_dir
from rlem_gym.envs.common import top_k_positive
from rlem_gym.envs.webshop.catalog import Catalog, default_data_dir, search_text

logger = logging.getLogger(__name__)

TOP_K = 50
K1 = 0.9
B = 0.4
#: Lucene's default English stop words (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET).
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
ANALYZER_VERSION = "1:words+possessive|lucene33|porter|k1=0.9,b=0.4"

_TOKEN = re.compile(r"\w+(?:['’.]\w+)*")
#: how many indexes this process built from scratch / loaded from disk (tests check resets add none).
STATS = {"built": 0, "loaded": 0}
_INDEXES: dict[str, "SearchIndex"] = {}


def _stemmer():
    try:
        import Stemmer
    except ImportError:  # stemming is part of the analyzer; without it results differ, so say so
        logger.warning("PyStemmer is not installed: WebShop search runs without stemming (pip install PyStemmer)")
        return None
    return Stemmer.Stemmer("porter")


class Analyzer:
    """Turns product text and queries into BM25 terms (the same way for both)."""

    def __init__(self) -> None:
        self._stem = _stemmer()
        self._cache: dict[str, str] = {}
        self.version = ANALYZER_VERSION + ("" if self._stem else "|nostem")

    def __call__(self, text: str) -> list[str]:
        terms = []
        cache = self._cache
        for tok in _TOKEN.findall(text.lower()):
            if tok.endswith(("'s", "’s")):
                tok = tok[:-2]
            if not tok or tok in STOP_WORDS:
                continue
            stem = cache.get(tok)
            if stem is None:
                stem = self._stem.stemWord(tok) if self._stem else tok
                if len(cache) < 1_000_000:
                    cache[tok] = stem
            terms.append(stem)
        return terms


class SearchIndex:
    """A BM25 index over one catalog: ``search(query)`` -> catalog positions, best first."""

    def __init__(self, retriever, n_docs: int, analyzer: Analyzer) -> None:
        self.retriever = retriever
        self.n_docs = n_docs
        self.analyzer = analyzer
        self._vocab = retriever.vocab_dict

    def search(self, query: str, k: int = TOP_K) -> list[int]:
        """Positions of the top ``k`` products matching ``query`` (score > 0), ties by position."""
        terms = [t for t in self.analyzer(query) if t in self._vocab]
        if not terms or k <= 0:
            return []
        return top_k_positive(self.retriever.get_scores(terms), k).tolist()


def build_index(texts: Iterable[str], analyzer: Analyzer | None = None) -> SearchIndex:
    """Index an iterable of product texts (position i = product i)."""
    import bm25s

    analyzer = analyzer or Analyzer()
    corpus = [analyzer(t) for t in texts]
    retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
    retriever.index(corpus, show_progress=False)
    STATS["built"] += 1
    return SearchIndex(retriever, len(corpus), analyzer)


def _user_cache_dir() -> Path:
    from rlem_gym.cache import cache_root

    return cache_root()


def index_dir(catalog: Catalog, analyzer_version: str = ANALYZER_VERSION) -> Path:
    """Where the catalog's index is (or will be) saved on disk."""
    key = hashlib.sha256(f"{catalog.digest()}|{len(catalog)}|{analyzer_version}".encode()).hexdigest()[:20]
    data_dir = catalog.files.products.parent
    if data_dir.resolve() != default_data_dir() and os.access(data_dir, os.W_OK):
        return data_dir / f".rlem_gym_index_{key}"
    return _user_cache_dir() / "webshop" / f"bm25_{key}"


def _load(folder: Path, catalog: Catalog, analyzer: Analyzer) -> SearchIndex | None:
    import bm25s

    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("n_docs") != len(catalog) or meta.get("analyzer") != analyzer.version:
            return None
        retriever = bm25s.BM25.load(str(folder), mmap=False, show_progress=False, verbosity=0)
    except (OSError, ValueError, KeyError):
        return None
    STATS["loaded"] += 1
    return SearchIndex(retriever, len(catalog), analyzer)


def _save(index: SearchIndex, folder: Path, catalog: Catalog) -> None:
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=folder.parent))
    except OSError as exc:
        logger.info("WebShop search index not cached (%s); it will be rebuilt in the next process", exc)
        return
    try:
        index.retriever.save(str(tmp), show_progress=False)
        meta = {"n_docs": index.n_docs, "analyzer": index.analyzer.version, "products_sha256": catalog.digest()}
        (tmp / "meta.json").write_text(json.dumps(meta))
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        os.replace(tmp, folder)
        fsync_dir(folder.parent)
    except OSError as exc:  # another process won the race (folder exists) or the disk is full
        logger.info("WebShop search index not saved to %s (%s)", folder, exc)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def get_index(catalog: Catalog) -> SearchIndex:
    """The catalog's search index: from this process's memory, else from disk, else built and saved."""
    analyzer = Analyzer()
    folder = index_dir(catalog, analyzer.version)
    key = str(folder)
    if key in _INDEXES:
        return _INDEXES[key]
    index = _load(folder, catalog, analyzer) if folder.is_dir() else None
    if index is None:
        index = build_index((search_text(p) for p in catalog.products), analyzer)
        if folder.is_dir():  # stale or unreadable: replace it
            shutil.rmtree(folder, ignore_errors=True)
        _save(index, folder, catalog)
    _INDEXES[key] = index
    return index
