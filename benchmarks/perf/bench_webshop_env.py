"""WebShop env speed: steps/s of a random valid-action loop, BM25 search latency at 1k and 100k products, peak RSS.

Targets: >= 1,000 env steps/s on the 1k catalog; search <= 10 ms median at 100k products.

The 100k catalog is synthesised from the shipped 1k one: 100 copies of every product's search text
(title + description + first bullet + options); in each copy every word is kept with probability 0.9
(numpy seed 0) and one copy-specific token ``copy<j>`` is added, so vocabulary and text lengths stay
realistic while posting lists are ~100x longer than at 1k (a pessimistic case for BM25 latency).
Queries are the first 200 synthetic goal instructions (test split order), as an agent would type them.

Run: ``python -m rlem_gym.benchmarks.perf.bench_webshop_env [--steps 20000] [--copies 100]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlem_gym.benchmarks.perf.measure import latency_summary, machine_line, peak_rss_mb


def _random_valid_loop(n_steps: int, seed: int = 0) -> tuple[float, int, int]:
    from rlem_gym.envs.webshop import WebShopEnv

    env = WebShopEnv(split="all")
    rng = np.random.default_rng(seed)
    words = ["pillow", "shirt", "tea", "shoes", "phone case", "lamp", "hair mask", "coffee"]
    obs, info = env.reset(seed=seed)
    resets, buys = 1, 0
    start = time.perf_counter()
    for _ in range(n_steps):
        acts = info["available_actions"]
        choices = [f"click[{c}]" for c in acts["clickables"]]
        if acts["has_search_bar"]:
            choices.append(f"search[{words[int(rng.integers(len(words)))]}]")
        obs, reward, terminated, truncated, info = env.step(choices[int(rng.integers(len(choices)))])
        if terminated or truncated:
            buys += int(terminated)
            obs, info = env.reset()
            resets += 1
    elapsed = time.perf_counter() - start
    return n_steps / elapsed, resets, buys


def _latencies(index, queries: list[str], repeat: int = 3) -> list[float]:
    """Seconds per ``index.search`` call, every query ``repeat`` times."""
    out = []
    for _ in range(repeat):
        for q in queries:
            t = time.perf_counter()
            index.search(q)
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps to time")
    parser.add_argument("--copies", type=int, default=100, help="copies of the 1k catalog in the synthetic one")
    args = parser.parse_args()

    from rlem_gym.envs.webshop.catalog import get_catalog, search_text
    from rlem_gym.envs.webshop.goals import get_goals
    from rlem_gym.envs.webshop.reward import tagger_name
    from rlem_gym.envs.webshop.search import build_index, get_index

    t0 = time.perf_counter()
    catalog = get_catalog()
    index = get_index(catalog)
    print(
        f"catalog + index ready in {time.perf_counter() - t0:.2f} s ({len(catalog)} products); tagger: {tagger_name()}"
    )
    _random_valid_loop(2_000, seed=99)  # warm-up: spaCy, caches
    sps, resets, buys = _random_valid_loop(args.steps)
    print(f"random valid-action loop: {args.steps} steps, {resets} resets, {buys} purchases: {sps:,.0f} steps/s")

    queries = [g["instruction_text"] for g in get_goals(catalog, "synthetic")[:200]]
    print(f"search @ {len(catalog):,} products: {latency_summary(_latencies(index, queries))}")

    rng = np.random.default_rng(0)
    base = [search_text(p).split() for p in catalog.products]
    t0 = time.perf_counter()
    texts = []
    for j in range(args.copies):
        for words in base:
            keep = rng.random(len(words)) < 0.9
            texts.append(" ".join([w for w, k in zip(words, keep) if k] + [f"copy{j}"]))
    synth_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    big = build_index(texts)
    build_s = time.perf_counter() - t0
    del texts
    print(f"synthetic catalog: {big.n_docs:,} products (made in {synth_s:.1f} s, indexed in {build_s:.1f} s)")
    print(f"search @ {big.n_docs:,} products: {latency_summary(_latencies(big, queries))}")
    print(f"peak RSS: {peak_rss_mb():,.0f} MB; machine: {machine_line()}")


if __name__ == "__main__":
    main()
