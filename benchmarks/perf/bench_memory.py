"""Retrieval benchmark of the experience memory: the official approach vs ours (flat) vs ours (ivf / hnsw).

Run: ``python -m rlem_gym.benchmarks.perf.bench_memory [--sizes 500 10000 100000 1000000] [--write]``

What is compared, in one run (WebShop matcher: page-type equality + instruction cosine, lam=0.5):

(a) ``official``: a re-implementation, written here only, of the official Rememberer lookup: a Python
    loop over every record that re-encodes the stored instruction with the sentence model at query
    time, takes its cosine with the query, adds the page-type match, and sorts. It is timed at 500
    records; its cost is linear in N (one encode per record), so larger sizes are extrapolated from
    the measured per-record cost and marked as such.
(b) ``flat``: :class:`rlem_gym.memory.ExperienceMemory` with the exact FAISS index.
(c) ``ivf`` (and ``hnsw`` up to 100k): the same memory with an approximate index.

Data: the 12,087 real WebShop human goal instructions are encoded once with the shipped
all-MiniLM-L6-v2 (cached under the temp dir). Memories of 500 and 10,000 records use real
vectors; 200 held-out goals are the queries. Beyond 10k, vectors are synthesised from the real
ones: v = normalise(e_i + a * e_j + 0.05 * z), with e_i, e_j random real goal vectors, a ~ U(0, 0.5),
z ~ N(0, I/d), so they stay on the manifold of real instructions. Every record gets a random page
type out of 4. Each size runs in its own subprocess (clean RSS numbers, bounded memory).
Latencies exclude the query encoding unless marked "cold" (the query's vector is cached, as in
an episode where the task repeats every step); "cold" adds one fresh MiniLM encode.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rlem_gym.atomic import atomic_write_bytes
from rlem_gym.benchmarks.perf.measure import machine_line, percentile_ms
from rlem_gym.trajectory import Situation

PAGES = ("search", "results", "item", "item_sub")
N_QUERIES = 200
REAL_POOL = 10_000
CACHE = Path(tempfile.gettempdir()) / "rlem_gym_bench_memory_goals.npz"


def page_kind(observation: str) -> str:
    """The page type of the benchmark's observations ("<page> <n>")."""
    return observation.split(maxsplit=1)[0]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def goal_vectors() -> tuple[list[str], np.ndarray]:
    """The real human goals and their MiniLM vectors (encoded once, cached)."""
    if CACHE.is_file():
        with np.load(CACHE, allow_pickle=False) as z:
            return [str(t) for t in z["texts"]], z["vectors"]
    from rlem_gym.memory.embeddings import default_embedder

    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "webshop" / "human_goals.json"
    texts = list(dict.fromkeys(json.loads(path.read_text())))
    t0 = time.perf_counter()
    vecs = default_embedder().encode(texts)
    print(f"# encoded {len(texts)} real goals in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    buf = io.BytesIO()
    np.savez(buf, texts=np.array(texts), vectors=vecs)
    atomic_write_bytes(CACHE, buf.getvalue())  # a killed run leaves no torn cache behind
    return texts, vecs


class PrecomputedEmbedder:
    """Serves the cached real MiniLM vectors by text (benchmark only: no encoding in children)."""

    def __init__(self, texts, vecs):
        from rlem_gym.models import MINILM_NAME

        self.name, self.dim = MINILM_NAME, vecs.shape[1]
        self._row = {t: i for i, t in enumerate(texts)}
        self._vecs = vecs

    def encode(self, texts):
        return self._vecs[[self._row[t] for t in texts]]


def synth_vectors(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n vectors near the real-instruction manifold (see the module docstring), in chunks."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        v = (
            real[rng.integers(len(real), size=m)]
            + rng.uniform(0, 0.5, size=(m, 1)).astype(np.float32) * real[rng.integers(len(real), size=m)]
        )
        v += (0.05 / np.sqrt(real.shape[1])) * rng.standard_normal(v.shape).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[s : s + m] = v
    return out


# --------------------------------------------------------------------------- (a) official approach
def official_scan(model, records, query_task, query_page, k=2):
    """The official lookup: encode every stored instruction again, per query, in a Python loop."""
    q = model.encode([query_task], normalize_embeddings=True)[0]
    scored = []
    for task, page in records:
        v = model.encode([task], normalize_embeddings=True)[0]
        scored.append((0.5 * float(q @ v) + 0.5 * (1.0 if page == query_page else 0.0), task))
    scored.sort(key=lambda x: -x[0])
    return scored[:k]


def bench_official(n_records=500, n_queries=5):
    from rlem_gym.memory.embeddings import default_embedder

    texts, _ = goal_vectors()
    model = default_embedder()._model
    rng = np.random.default_rng(0)
    records = [(texts[i], PAGES[rng.integers(4)]) for i in range(n_records)]
    queries = texts[REAL_POOL : REAL_POOL + n_queries]
    lat = []
    for qt in queries:
        t0 = time.perf_counter()
        official_scan(model, records, qt, PAGES[rng.integers(4)])
        lat.append(time.perf_counter() - t0)
    return {
        "n": n_records,
        "queries": n_queries,
        "p50_ms": percentile_ms(lat, 50),
        "p99_ms": percentile_ms(lat, 99),
        "per_record_ms": percentile_ms(lat, 50) / n_records,
        "load_avg": os.getloadavg()[0],
    }


def bench_cold_query_encode(n=30):
    from rlem_gym.memory.embeddings import default_embedder

    texts, _ = goal_vectors()
    model = default_embedder()._model
    lat = []
    for t in texts[REAL_POOL + 500 : REAL_POOL + 500 + n]:
        t0 = time.perf_counter()
        model.encode([t], normalize_embeddings=True)
        lat.append(time.perf_counter() - t0)
    return {"p50_ms": percentile_ms(lat, 50), "p99_ms": percentile_ms(lat, 99)}


# --------------------------------------------------------------------------- (b)/(c) ours, one size per process
def build_memory(n, texts, vecs, index, embedder, index_options=None):
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WebShopMatcher

    m = ExperienceMemory(
        WebShopMatcher(embedder, page_kind), capacity=max(n, 1), index=index, index_options=index_options or {}
    )
    rng = np.random.default_rng(1)
    pages = rng.integers(4, size=n)
    if n <= REAL_POOL:
        tasks, tvecs = texts[:n], vecs[:n]
    else:
        tasks = [f"synthetic goal {i}" for i in range(n)]
        tvecs = synth_vectors(vecs[:REAL_POOL], n, seed=2)
    t0 = time.perf_counter()
    for s in range(0, n, 100_000):  # chunks keep the temporary item list small
        items = [
            {
                "situation": Situation(tasks[i], f"{PAGES[pages[i]]} {i}"),
                "tables": [{"click[b0]": _stats()}],
                "visits": 1,
            }
            for i in range(s, min(n, s + 100_000))
        ]
        m._bulk_insert(items, {tasks[i]: tvecs[i] for i in range(s, min(n, s + 100_000))})
    del tvecs
    m._index.search(vecs[0], 0, 1)  # forces a pending (ivf training) build
    return m, time.perf_counter() - t0


def _stats():
    from rlem_gym.memory import ActionStats

    return ActionStats(q=1.0, visits=1, last_reward=1.0)


def run_queries(m, queries):
    lat, tops = [], []
    for qt, page in queries:
        t0 = time.perf_counter()
        hits = m.retrieve(qt, f"{page} q", k=2)
        lat.append(time.perf_counter() - t0)
        tops.append([h.record_id for h in hits])
    return lat, tops


def child(n: int, hnsw: bool) -> dict:
    texts, vecs = goal_vectors()
    emb = PrecomputedEmbedder(texts, vecs)
    rng = np.random.default_rng(3)
    queries = [(texts[REAL_POOL + i], PAGES[rng.integers(4)]) for i in range(N_QUERIES)]
    out: dict = {"n": n}
    import faiss  # loaded before the RSS baseline, so per-record RSS counts records only

    faiss.IndexFlatIP(8).search(np.zeros((1, 8), dtype=np.float32), 1)
    gc.collect()
    base = rss_bytes()
    m, build_s = build_memory(n, texts, vecs, "flat", emb)
    gc.collect()
    out["rss_per_record_flat"] = (rss_bytes() - base) / n
    out["bulk_insert_per_s"] = n / build_s
    run_queries(m, queries[:10])  # warm-up
    lat, flat_tops = run_queries(m, queries)
    out["flat"] = {"p50_ms": percentile_ms(lat, 50), "p99_ms": percentile_ms(lat, 99)}
    # (c) ivf over the same records: switch the index kind and rebuild (the flat FAISS index is freed)
    results = {}
    kinds = [("ivf", {"nprobe": p}) for p in (8, 16, 32)]
    if hnsw and n <= 100_000:
        kinds.append(("hnsw", {}))
    for kind, opts in kinds:
        idx = m._index
        if idx.kind != kind:
            idx.kind = kind
            idx.ivf_min = min(idx.ivf_min, 4096)
            t0 = time.perf_counter()
            idx.rebuild()
            results[f"{kind}_build_s"] = time.perf_counter() - t0
        idx.set_search_params(**opts)
        run_queries(m, queries[:10])
        lat, tops = run_queries(m, queries)
        recall = float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(tops, flat_tops)]))
        name = kind + (f"@nprobe{opts['nprobe']}" if "nprobe" in opts else "")
        results[name] = {"p50_ms": percentile_ms(lat, 50), "p99_ms": percentile_ms(lat, 99), "recall@2": recall}
    out["approx"] = results
    out["rss_total_mb"] = rss_bytes() / 2**20
    if n <= REAL_POOL:
        out["eviction"] = bench_eviction(n, texts, vecs, emb)
        out["update_insert_per_s"] = bench_update_inserts(texts, vecs, emb)
    return out


def bench_eviction(n, texts, vecs, emb):
    """Steady state at capacity: each step inserts a new record (evicting one) and then queries."""
    res = {}
    for deletion in ("remove", "rebuild"):
        m, _ = build_memory(n, texts, vecs, "flat", emb, {"deletion": deletion})
        from rlem_gym.trajectory import Step

        steps = 300
        t0 = time.perf_counter()
        for i in range(steps):
            t = texts[(n + i) % REAL_POOL]
            m.update(t, [Step.of(f"results e{i}", "click[b1]", 1.0)])
            m.retrieve(texts[REAL_POOL + i % N_QUERIES], "item q", k=2)
        res[deletion] = (time.perf_counter() - t0) / steps * 1000.0
        assert len(m) == n and len(m._index) == n
    return res


def bench_update_inserts(texts, vecs, emb, n=2000):
    """Inserts through the public update() path (one 1-step episode per new key; vectors cached)."""
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WebShopMatcher
    from rlem_gym.trajectory import Step

    m = ExperienceMemory(WebShopMatcher(emb, page_kind), capacity=n)
    t0 = time.perf_counter()
    for i in range(n):
        m.update(texts[i], [Step.of(f"search {i}", "search[x]", 0.0)])
    return n / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- report
def report(official, cold, rows) -> str:
    lines = [
        "## Memory retrieval (`rlem_gym.memory`)",
        "",
        "Command: `python -m rlem_gym.benchmarks.perf.bench_memory --write` (sizes 500, 10k, 100k, 1M; 200 queries each).",
        f"Date {datetime.date.today().isoformat()}, machine: {machine_line()} at the end of the run.",
        "WebShop matcher (page type + MiniLM instruction cosine, lam 0.5), k = 2. Real MiniLM vectors of the",
        "WebShop human goals up to 10k records; beyond, synthesised near them: normalise(e_i + a e_j + 0.05 z),",
        "a ~ U(0, 0.5). Warm latencies exclude encoding the query (cached per task); cold adds one encode.",
        "",
        f"(a) official approach (Python scan re-encoding every stored key per query), measured at {official['n']} records "
        f"over {official['queries']} queries: p50 {official['p50_ms']:.0f} ms, p99 {official['p99_ms']:.0f} ms "
        f"({official['per_record_ms']:.2f} ms per record; larger sizes extrapolated linearly, marked ~; "
        f"1-min load average {official.get('load_avg', float('nan')):.1f} on 2 cores: torch's encodes slow down a lot "
        "under load, so treat (a) and the ratios against it as load-dependent).",
        f"One cold MiniLM query encode: p50 {cold['p50_ms']:.1f} ms, p99 {cold['p99_ms']:.1f} ms.",
        "",
        "| records | (a) official p50 | (b) flat p50 / p99 | (b) speed-up warm / cold | (c) ivf p50 / p99 (nprobe) | recall@2 (c) vs (b) | (c) vs (b) speed-up | bulk insert | RSS / record |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n = r["n"]
        a = official["per_record_ms"] * n
        a_txt = f"{a:,.0f} ms" if n == official["n"] else f"~{a / 1000:,.0f} s"
        f50, f99 = r["flat"]["p50_ms"], r["flat"]["p99_ms"]
        best = choose_ivf(r["approx"])
        c = r["approx"][best]
        lines.append(
            f"| {n:,} | {a_txt} | {f50:.3f} / {f99:.3f} ms | {a / f50:,.0f}x / {a / (f50 + cold['p50_ms']):,.0f}x | "
            f"{c['p50_ms']:.3f} / {c['p99_ms']:.3f} ms ({best.split('nprobe')[-1]}) | {c['recall@2']:.3f} | "
            f"{f50 / c['p50_ms']:.1f}x | {r['bulk_insert_per_s']:,.0f} rec/s | {r['rss_per_record_flat']:,.0f} B |"
        )
    lines += ["", "All approximate settings measured (p50 ms / recall@2; build = index (re)build seconds):", ""]
    for r in rows:
        parts = [
            f"{k}: {v['p50_ms']:.3f} ms / {v['recall@2']:.3f}" if isinstance(v, dict) else f"{k} {v:.1f} s"
            for k, v in r["approx"].items()
        ]
        lines.append(f"- {r['n']:,}: " + "; ".join(parts) + f"; process RSS {r['rss_total_mb']:,.0f} MB")
    ev = [r for r in rows if "eviction" in r]
    if ev:
        lines += ["", "Eviction at capacity (one insert that evicts + one query per step, flat index):", ""]
        for r in ev:
            e = r["eviction"]
            lines.append(
                f"- {r['n']:,} records: FAISS remove_ids {e['remove']:.2f} ms/step, lazy rebuild {e['rebuild']:.2f} ms/step "
                f'-> default `deletion="remove"`; inserts via `update()` {r["update_insert_per_s"]:,.0f} keys/s'
            )
    small = next((r for r in rows if r["n"] == official["n"]), None)
    big = next((r for r in rows if r["n"] == 1_000_000), None)
    lines += ["", "Targets:"]
    if small:
        s = official["per_record_ms"] * small["n"] / small["flat"]["p50_ms"]
        lines.append(f"- (b) >= 100x faster than (a) at 500: {s:,.0f}x warm ({'met' if s >= 100 else 'NOT met'}).")
    if big:
        c = big["approx"][choose_ivf(big["approx"])]
        ok = c["p50_ms"] <= 5 and c["recall@2"] >= 0.95
        lines.append(
            f"- (c) p50 <= 5 ms with recall@2 >= 0.95 at 1M: {c['p50_ms']:.2f} ms, recall {c['recall@2']:.3f} ({'met' if ok else 'NOT met'})."
        )
    lines += [
        "",
        "Notes: RSS per record (from 10k up) = the raw 384-d float32 row kept for exact re-scoring and saving",
        "(1.5 KB) + FAISS's augmented 416-d copy (1.7 KB) + the Python record (~1.5 KB) + the task's stored vector",
        "(~1.6 KB per distinct task, kept so a task is never re-encoded; every record here has its own task, the",
        "worst case); the 500-record figure is allocator noise. IVF uses nlist = sqrt(N) and trains on <= 40 x nlist rows; the memory's default nprobe",
        "is 16. HNSW (M=32) matches IVF's latency but builds slowly on 2 cores, so it is not run at 1M.",
    ]
    return "\n".join(lines) + "\n"


def choose_ivf(approx: dict) -> str:
    """The fastest ivf setting with recall@2 >= 0.95 (else the most accurate one)."""
    ivf = {k: v for k, v in approx.items() if k.startswith("ivf@")}
    good = [k for k, v in ivf.items() if v["recall@2"] >= 0.95]
    if good:
        return min(good, key=lambda k: ivf[k]["p50_ms"])
    return max(ivf, key=lambda k: ivf[k]["recall@2"])


def write_section(text: str, path: Path) -> None:
    old = path.read_text() if path.is_file() else "# rlem-gym benchmark results\n"
    start = old.find("## Memory retrieval")
    if start >= 0:  # replace the section in place
        end = old.find("\n## ", start + 1)
        new = old[:start] + text + ("\n" + old[end + 1 :] if end >= 0 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    atomic_write_bytes(path, new.encode())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 10_000, 100_000, 1_000_000])
    ap.add_argument("--official-queries", type=int, default=5)
    ap.add_argument("--no-hnsw", action="store_true", help="skip hnsw (it builds slowly on 2 cores)")
    ap.add_argument("--write", action="store_true", help="replace the Memory section of benchmarks/perf/RESULTS.md")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, not args.no_hnsw)))
        return
    goal_vectors()
    official = bench_official(500, args.official_queries)
    cold = bench_cold_query_encode()
    print(f"# (a) official at 500: {official}", file=sys.stderr)
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, "-m", "rlem_gym.benchmarks.perf.bench_memory", "--child", str(n)] + (
            ["--no-hnsw"] if args.no_hnsw else []
        )
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            raise SystemExit(f"the {n}-record run failed")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"# {n}: {time.perf_counter() - t0:.0f} s {rows[-1]}", file=sys.stderr)
    text = report(official, cold, rows)
    print(text)
    if args.write:
        write_section(text, Path(__file__).with_name("RESULTS.md"))


if __name__ == "__main__":
    main()
