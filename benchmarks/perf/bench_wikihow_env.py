"""WikiHow env speed: steps/s under a random valid-action policy, reset latency, search latency.

Run: ``python -m rlem_gym.benchmarks.perf.bench_wikihow_env [--steps 20000]``. Target: >= 1,000 steps/s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlem_gym.benchmarks.perf.measure import latency_summary, machine_line, peak_rss_mb


def random_valid_action(rng: np.random.Generator, info: dict, words: list[str]) -> str:
    """A uniformly drawn valid action: CLICK a clickable id, INPUT words, SCROLL or GOBACK."""
    roll = rng.random()
    if roll < 0.6 and info["clickable_ids"]:
        return f"CLICK({info['clickable_ids'][rng.integers(len(info['clickable_ids']))]})"
    if roll < 0.75 and info["input_ids"]:
        return f"INPUT({info['input_ids'][0]}, {' '.join(rng.choice(words, 2))})"
    if roll < 0.95:
        return f"SCROLL({rng.choice(['UP', 'DOWN', 'LEFT', 'RIGHT'])})"
    return "GOBACK"


def main(argv: list[str] | None = None) -> None:
    """Measure and print the three numbers recorded in benchmarks/perf/RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    from rlem_gym.envs.wikihow.env import WikiHowEnv, default_search

    env = WikiHowEnv(task_set="canonical178", max_steps=15)  # the paper's cap, so resets are timed too
    cold = time.perf_counter() - t0
    words = sorted({w for t in env.tasks for w in t.keywords})
    rng = np.random.default_rng(args.seed)

    obs, info = env.reset(seed=args.seed)
    n_resets, t_reset = 0, 0.0
    start = time.perf_counter()
    for _ in range(args.steps):
        obs, _r, term, trunc, info = env.step(random_valid_action(rng, info, words))
        if term or trunc or info["last_action_error"] == "GOBACK: already on the first screen":
            t1 = time.perf_counter()
            obs, info = env.reset()
            t_reset += time.perf_counter() - t1
            n_resets += 1
    elapsed = time.perf_counter() - start
    sps = args.steps / elapsed

    resets = []
    for i in range(200):
        t1 = time.perf_counter()
        env.reset(options={"task_index": i % env.num_tasks})
        resets.append(time.perf_counter() - t1)

    search = default_search()
    queries = [f"{a} {b}" for a, b in zip(rng.choice(words, 300), rng.choice(words, 300))]
    lat = []
    for q in queries:
        search._cache.clear()  # measure uncached BM25 retrieval
        t1 = time.perf_counter()
        search.search(q)
        lat.append(time.perf_counter() - t1)

    print(f"cold start (bundle + site + BM25 index over {len(search.titles)} titles): {cold:.2f} s")
    print(f"random valid-action policy: {sps:,.0f} steps/s over {args.steps} steps ({n_resets} resets)")
    print(f"reset latency: {latency_summary(resets, digits=3)}")
    print(f"search latency (uncached): {latency_summary(lat)}")
    print(f"target >= 1,000 steps/s: {'met' if sps >= 1000 else 'NOT met'} (ratio {sps / 1000:.1f}x)")
    print(f"peak RSS: {peak_rss_mb():,.0f} MB; machine: {machine_line()}")


if __name__ == "__main__":
    main()
