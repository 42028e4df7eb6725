"""The FAISS index behind the experience memory: inner product over normalised, feature-augmented vectors.

Each memory record is one row: its task embedding ``v`` (unit norm) and its categorical
observation feature ``f`` (page type / instruction pattern, interned to an int). FAISS stores the
augmented vector ``[sqrt(lam) * v, sqrt(1 - lam) * onehot(f mod F)]``, whose inner product with
the query's augmented vector is exactly ``lam * cos + (1 - lam) * [same feature]``: the combined
similarity itself (up to collisions of the F feature slots, which only add candidates that the
memory's exact re-scoring then demotes). So one search ranks by the real metric, and the
observation part is a bonus inside the vector, not a rescan.

Kinds: ``"flat"`` (exact, IndexIDMap2 over IndexFlatIP), ``"ivf"`` (IndexIVFFlat, inner product;
exact flat search until ``ivf_min`` rows, then trained on the data and retrained when the memory
has grown 4x) and ``"hnsw"`` (IndexHNSWFlat; HNSW cannot delete, so evicted rows are tombstoned
and filtered, and the graph is rebuilt once tombstones pass 20%). Deletion on flat/ivf is either
``"remove"`` (FAISS ``remove_ids``) or ``"rebuild"`` (rebuild lazily before the next search);
``benchmarks/perf/bench_memory.py`` measures both. The raw rows are kept here too (for exact
re-scoring, rebuilds and saving). faiss is imported only when an index is created.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

IndexKind = Literal["flat", "ivf", "hnsw"]
_CHUNK = 65536
INDEX_KINDS = ("flat", "ivf", "hnsw")


class VectorIndex:
    """Rows of (id, unit vector, feature) with a FAISS index over their augmented vectors."""

    def __init__(
        self,
        dim: int,
        kind: IndexKind = "flat",
        *,
        lam: float = 0.5,
        n_feature_slots: int = 32,
        deletion: Literal["remove", "rebuild"] = "remove",
        ivf_min: int = 4096,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 64,
        ef_construction: int = 64,
    ) -> None:
        if kind not in INDEX_KINDS:
            raise ValueError(f"index must be one of {INDEX_KINDS}, got {kind!r}")
        if deletion not in ("remove", "rebuild"):
            raise ValueError(f"deletion must be 'remove' or 'rebuild', got {deletion!r}")
        import faiss  # heavy: import on use only

        self._faiss = faiss
        self.dim = int(dim)
        self.kind = kind
        self.lam = float(lam)
        self.n_feature_slots = int(n_feature_slots)
        self.deletion = deletion
        self.ivf_min = int(ivf_min)
        self.nprobe = int(nprobe)
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self.ef_construction = int(ef_construction)
        self._wv = math.sqrt(self.lam)
        self._wf = math.sqrt(1.0 - self.lam)
        # row store (dense; removal swaps the last row into the hole)
        self._vecs = np.zeros((0, self.dim), dtype=np.float32)
        self._feats = np.zeros(0, dtype=np.int64)
        self._ids = np.zeros(0, dtype=np.int64)
        self._n = 0
        self._row_of: dict[int, int] = {}
        # faiss side
        self._index = None
        self._trained_at = 0  # rows present when the ivf index was trained (0 = flat stage)
        self._tombstones: set[int] = set()  # hnsw only
        self._dirty = False  # rebuild before next search ("rebuild" deletion)
        self._reset_index()

    # ------------------------------------------------------------------ public
    def __len__(self) -> int:
        return self._n

    def __contains__(self, idx: int) -> bool:
        return idx in self._row_of

    def vectors(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """The raw unit vectors of ``ids`` (rows in the same order)."""
        rows = np.fromiter((self._row_of[int(i)] for i in ids), dtype=np.int64, count=len(ids))
        return self._vecs[rows]

    def add(self, ids: np.ndarray, vecs: np.ndarray, feats: np.ndarray) -> None:
        """Add rows (ids must be new); ``vecs`` are unit-norm float32 of shape (n, dim)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vecs = np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(ids), self.dim)
        feats = np.ascontiguousarray(feats, dtype=np.int64).reshape(-1)
        n = len(ids)
        if n == 0:
            return
        for i in ids.tolist():
            if i in self._row_of:
                raise KeyError(f"id {i} is already in the index")
        self._reserve(self._n + n)
        start = self._n
        self._vecs[start : start + n] = vecs
        self._feats[start : start + n] = feats
        self._ids[start : start + n] = ids
        for j, i in enumerate(ids.tolist()):
            self._row_of[i] = start + j
        self._n += n
        if self._dirty:
            return  # the pending rebuild will pick these rows up
        if self.kind == "ivf" and self._needs_retrain():
            self._dirty = True
            return
        self._index.add_with_ids(self._augment(vecs, feats), ids)

    def remove(self, ids: list[int] | np.ndarray) -> None:
        """Delete rows by id (unknown ids are ignored)."""
        gone = [int(i) for i in ids if int(i) in self._row_of]
        if not gone:
            return
        for i in gone:
            row = self._row_of.pop(i)
            last = self._n - 1
            if row != last:
                self._vecs[row] = self._vecs[last]
                self._feats[row] = self._feats[last]
                moved = int(self._ids[last])
                self._ids[row] = moved
                self._row_of[moved] = row
            self._n -= 1
        if self._dirty:
            return
        if self.kind == "hnsw":
            self._tombstones.update(gone)
            if len(self._tombstones) > max(64, 0.2 * self._n):
                self._dirty = True
        elif self.deletion == "rebuild":
            self._dirty = True
        else:
            self._index.remove_ids(np.asarray(gone, dtype=np.int64))

    def search(self, query_vec: np.ndarray, query_feat: int, k: int) -> np.ndarray:
        """Ids of up to ``k`` rows ranked by the augmented inner product (approximate for ivf/hnsw)."""
        if self._dirty:
            self.rebuild()
        if self._n == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64)
        q = self._augment(np.asarray(query_vec, dtype=np.float32).reshape(1, self.dim), np.array([query_feat]))
        extra = len(self._tombstones)
        kk = min(k + extra, int(self._index.ntotal))
        # one query gains nothing from OpenMP threads, and on a busy machine their barriers cost
        # milliseconds: search single-threaded, build with all threads
        faiss = self._faiss
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            _, found = self._index.search(q, kk)
        finally:
            faiss.omp_set_num_threads(threads)
        found = found[0]
        found = found[found >= 0]
        if extra:
            found = np.array([i for i in found.tolist() if i not in self._tombstones], dtype=np.int64)
        return found[:k]

    def rebuild(self) -> None:
        """Rebuild the FAISS index from the live rows (retrains ivf, drops hnsw tombstones)."""
        self._reset_index()
        n = self._n
        if n and self.kind == "ivf" and n >= self.ivf_min:
            self._train_ivf(n)
        for start in range(0, n, _CHUNK):  # chunked: bounded temporary memory
            stop = min(n, start + _CHUNK)
            aug = self._augment(self._vecs[start:stop], self._feats[start:stop])
            self._index.add_with_ids(aug, self._ids[start:stop])
        self._dirty = False

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Tune recall/speed at query time (ivf nprobe, hnsw efSearch)."""
        if nprobe is not None:
            self.nprobe = int(nprobe)
        if ef_search is not None:
            self.ef_search = int(ef_search)
        self._apply_search_params()

    # ----------------------------------------------------------------- private
    def _augment(self, vecs: np.ndarray, feats: np.ndarray) -> np.ndarray:
        n = len(vecs)
        out = np.zeros((n, self.dim + self.n_feature_slots), dtype=np.float32)
        out[:, : self.dim] = vecs
        out[:, : self.dim] *= self._wv
        if self._wf > 0:
            feats = np.asarray(feats, dtype=np.int64)
            known = feats >= 0  # a negative feature (unseen at query time) matches no slot
            out[np.arange(n)[known], self.dim + feats[known] % self.n_feature_slots] = self._wf
        return out

    def _reserve(self, need: int) -> None:
        cap = len(self._ids)
        if need <= cap:
            return
        new_cap = max(need, 2 * cap, 64)
        for name, shape, dtype in (
            ("_vecs", (new_cap, self.dim), np.float32),
            ("_feats", (new_cap,), np.int64),
            ("_ids", (new_cap,), np.int64),
        ):
            old = getattr(self, name)
            arr = np.zeros(shape, dtype=dtype)
            arr[: self._n] = old[: self._n]
            setattr(self, name, arr)

    def _needs_retrain(self) -> bool:
        if self._trained_at == 0:
            return self._n >= self.ivf_min
        return self._n >= 4 * self._trained_at

    def _reset_index(self) -> None:
        faiss = self._faiss
        d = self.dim + self.n_feature_slots
        self._tombstones = set()
        self._trained_at = 0
        if self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = self.ef_construction
            self._base = base
            self._index = faiss.IndexIDMap(base)
        else:  # flat, and ivf before it has enough rows to train
            self._base = faiss.IndexFlatIP(d)
            self._index = faiss.IndexIDMap2(self._base)
        self._apply_search_params()

    def _train_ivf(self, n: int) -> None:
        faiss = self._faiss
        d = self.dim + self.n_feature_slots
        nlist = int(min(4096, max(16, round(math.sqrt(n)))))
        quantizer = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = 10
        n_train = min(n, 40 * nlist)
        rng = np.random.default_rng(n)  # deterministic sample
        rows = np.arange(n) if n_train == n else np.sort(rng.choice(n, n_train, replace=False))
        ivf.train(self._augment(self._vecs[rows], self._feats[rows]))
        self._quantizer = quantizer  # keep alive
        self._base = ivf
        self._index = ivf  # IndexIVF stores ids itself and supports remove_ids
        self._trained_at = n
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        base = self._base
        if self.kind == "hnsw":
            base.hnsw.efSearch = self.ef_search
        elif hasattr(base, "nprobe"):
            base.nprobe = min(self.nprobe, base.nlist)
