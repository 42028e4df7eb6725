"""Load-time benchmark of the HF backend on a zoo GGUF: the dequantised-weights cache against the baseline.

The baseline is transformers' own GGUF path (the cache turned off with ``RLEM_GYM_DEQUANT_CACHE=0``):
it parses the file and dequantises every tensor in every new process. Ours is the same load from
:mod:`rlem_gym.llm.dequant_cache`. Each load runs in a fresh subprocess, in this order: the
baseline ``--reps`` times, one first load with an empty cache (it dequantises and writes the
entry), then ``--reps`` loads from the cache. Each child times ``make_llm`` alone (torch and
transformers are imported before the clock starts) and writes a greedy 16-token reply, which
must be the same in every child.

    python -m rlem_gym.benchmarks.perf.bench_load                          # smollm2-135m, 3 reps
    python -m rlem_gym.benchmarks.perf.bench_load --model qwen2.5-coder-0.5b --reps 2

Prints the median seconds of each kind and the ratio baseline / cached.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from rlem_gym.benchmarks.perf.measure import machine_line, peak_rss_mb
from rlem_gym.llm.dequant_cache import DEQUANT_CACHE_ENV

PROMPT = "Write one sentence about the sea."


def child(spec: str) -> dict:
    """Load ``spec`` in this process; its load seconds, origin and a greedy reply."""
    import torch  # noqa: F401 - imported before the clock, as in the baseline
    import transformers  # noqa: F401

    from rlem_gym.llm import make_llm

    t0 = time.perf_counter()
    llm = make_llm(spec)
    load_s = time.perf_counter() - t0
    text = llm.generate(PROMPT, max_tokens=16, temperature=0.0).text
    return {"load_s": round(load_s, 2), "origin": llm._w.origin, "text": text, "peak_rss_mb": round(peak_rss_mb())}


def _spawn(spec: str, cache: str, timeout: float) -> dict:
    env = dict(os.environ, **{DEQUANT_CACHE_ENV: cache})
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rlem_gym.benchmarks.perf.bench_load", "--child", spec],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child for {spec} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(lines[-1])
    out["process_s"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="a zoo model name (loaded with the HF backend)")
    ap.add_argument("--reps", type=int, default=3, help="loads of each kind (median reported)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        result = child(args.child)
        print(json.dumps(result))
        return result
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    spec = f"{args.model}:hf"
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-load-") as cache:
        baseline = [_spawn(spec, "0", args.timeout) for _ in range(args.reps)]
        first = _spawn(spec, cache, args.timeout)
        cached = [_spawn(spec, cache, args.timeout) for _ in range(args.reps)]
    assert all(r["origin"] == "gguf" for r in baseline + [first]) and all(r["origin"] == "cache" for r in cached)
    texts = {r["text"] for r in baseline + [first] + cached}
    if len(texts) != 1:
        raise SystemExit(f"the loads disagree on the greedy reply: {sorted(texts)}")
    med = {
        name: statistics.median(r["load_s"] for r in rows)
        for name, rows in (("baseline", baseline), ("first", [first]), ("cached", cached))
    }
    print(f"| load of {spec} | make_llm s (median of {args.reps}) | process s | peak RSS MiB |")
    print("|---|---|---|---|")
    for label, name, rows in (
        ("transformers GGUF path (baseline, cache off)", "baseline", baseline),
        ("first load: dequantise + write the cache", "first", [first]),
        ("from the dequantised cache (ours)", "cached", cached),
    ):
        print(
            f"| {label} | {med[name]:.1f} | {statistics.median(r['process_s'] for r in rows):.1f} | "
            f"{max(r['peak_rss_mb'] for r in rows)} |"
        )
    print(
        f"ratio baseline / cached: {med['baseline'] / med['cached']:.1f}x; same greedy reply in all "
        f"{2 * args.reps + 1} processes: {next(iter(texts))!r}"
    )
    return {"baseline": baseline, "first": first, "cached": cached, "ratio": med["baseline"] / med["cached"]}


if __name__ == "__main__":
    main()
