"""Replay a published run's test episodes through a backend setting, and compare step cost and actions.

A step's cost is measured on the study's own episodes, not on new ones: each committed test
episode of ``RUN`` (a folder under ``docs/study/``) is played again with the agents, memories and
settings of its ``config.json``, and at every step the agent's action is compared with the
committed one. The env is then stepped with the *committed* action (teacher forcing), so one
differing step does not derail the rest of the episode and every step is compared on the same
situation.

Each ``--variant NAME=JSON`` is a set of backend keyword arguments (``llm_kwargs``) that gets its
own model instance; episodes are run in the committed run's order, variant after variant for each
episode, so that the machine's load falls alike on all of them. ``--every N`` runs the first
variant (the baseline) only on every N-th goal, to save time; the others run on every goal.

Per (row, variant) it prints steps, p50 and mean wall time of ``agent.act``, the share of prompt
tokens served from the KV cache, prefill tokens per step, and how many actions equal the
committed ones; and, on the goals that every variant ran, the p50 ratio to the baseline.
A step whose action differs is kept in the JSON output with both actions, for a tie check.

    python -m rlem_gym.benchmarks.publish --restore docs/study/webshop-main runs/replay/webshop-main
    python -m rlem_gym.benchmarks.bench_replay runs/replay/webshop-main \\
        --variant 'before={}' --variant 'after={"prefix_cache_mb": 2048}' --every 5 \\
        --out runs/replay/webshop-main.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.perf.measure import machine_line, matmul_gflops


def committed_steps(run_root: Path) -> dict[str, list[dict[str, Any]]]:
    """item id -> the committed test steps of that episode, in order (from the run's step log)."""
    path = run_root / "episodes.jsonl"
    opener = gzip.open if not path.exists() else open
    path = path if path.exists() else run_root / "episodes.jsonl.gz"
    steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with opener(path, "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("phase") == "test":
                steps[rec["item"]].append(rec)
    for recs in steps.values():
        recs.sort(key=lambda r: r["step"])
    return steps


def replay_episode(ctx: Any, item: Any, committed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Play ``item`` with ``ctx``'s agent, forcing the committed actions; one dict per step."""
    from rlem_gym.benchmarks.episode import fresh_llm_cache, seed_episode, short_hash

    agent = ctx.test_agent(item.agent, item.seed)
    env = ctx.env("test")
    seed_episode(agent, item.episode_seed)
    fresh_llm_cache(getattr(agent, "llm", None))
    obs, info = env.reset(seed=item.episode_seed, options=dict(item.task.options))
    agent.reset(obs, info)
    out = []
    for rec in committed:
        t0 = time.perf_counter()
        action = agent.act(obs, info)
        act_s = time.perf_counter() - t0
        st = agent.last_step
        forced = rec["action"]
        out.append({
            "step": rec["step"], "action": action, "committed": forced, "same": action == forced,
            "same_prompt": (short_hash(st.prompt) if st.prompt else "") == rec["prompt_hash"],
            "act_s": round(act_s, 4), "prompt_tokens": int(st.prompt_tokens),
            "cached_tokens": int(st.cached_tokens), "completion_tokens": int(st.completion_tokens),
        })
        obs, reward, terminated, truncated, info = env.step(forced)
        agent.observe(forced, float(reward), terminated, truncated, info)
        if terminated or truncated:
            break
    return out


def summarize(rows: list[dict[str, Any]], baseline: str) -> str:
    """The markdown table of a replay (see the module docstring)."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(r["agent"], r["variant"])].append(r)
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lines = ["| row | variant | steps | p50 s/step | mean s/step | KV-reused share | prefill tok/step (mean) "
             "| actions = committed | p50 on shared goals: baseline -> this (speed-up) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for agent in dict.fromkeys(r["agent"] for r in rows):
        base_goals = {r["goal"] for r in by[(agent, baseline)]}
        for v in variants:
            rs = by[(agent, v)]
            if not rs:
                continue
            s = [r["act_s"] for r in rs]
            pt = sum(r["prompt_tokens"] for r in rs)
            ct = sum(r["cached_tokens"] for r in rs)
            same = sum(r["same"] for r in rs)
            shared = [r["act_s"] for r in rs if r["goal"] in base_goals]
            base = [r["act_s"] for r in by[(agent, baseline)]]
            ratio = ""
            if v != baseline and shared and base:
                b, a = statistics.median(base), statistics.median(shared)
                ratio = f"{b:.2f} -> {a:.2f} ({b / a:.2f}x)"
            lines.append(f"| {agent} | {v} | {len(rs)} | {statistics.median(s):.2f} | {statistics.mean(s):.2f} "
                         f"| {ct / pt:.1%} | {(pt - ct) / len(rs):.0f} | {same}/{len(rs)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder (restore a published one with `publish --restore`)")
    p.add_argument("--variant", action="append", required=True, metavar="NAME=JSON",
                   help="backend keyword arguments of one variant; the first is the baseline")
    p.add_argument("--agents", default="", help="comma-separated rows to replay (default: every LLM row)")
    p.add_argument("--goals", default="", help="goal positions a:b within the test split (default: all)")
    p.add_argument("--every", type=int, default=1, help="run the baseline only on every N-th goal")
    p.add_argument("--out", required=True, help="JSON output (rewritten after each episode)")
    args = p.parse_args(argv)

    from rlem_gym.benchmarks.config import BenchConfig
    from rlem_gym.benchmarks.build import uses_llm
    from rlem_gym.benchmarks.episode import EpisodeContext
    from rlem_gym.benchmarks.plan import plan
    from rlem_gym.benchmarks.runner import Runner
    from rlem_gym.llm import make_llm

    variants: list[tuple[str, dict[str, Any]]] = []
    for spec in args.variant:
        name, sep, kw = spec.partition("=")
        if not sep or not name:
            p.error(f"--variant takes NAME=JSON, got {spec!r}")
        variants.append((name, json.loads(kw or "{}")))
    root = Path(args.run)
    cfg = BenchConfig.from_dict(json.loads((root / "config.json").read_text())["config"])
    runner = Runner(cfg, out=root)
    train, test = runner._resolve_splits()
    _, items = plan(cfg, train, test)
    committed = committed_steps(root)
    wanted = [a for a in args.agents.split(",") if a] or [a for a in cfg.agents if uses_llm(a)]
    lo, hi = (int(x) for x in args.goals.split(":")) if args.goals else (0, len(test.tasks))
    items = [i for i in items if i.agent in wanted and lo <= i.task.index < hi and i.id in committed]

    def factory(kw: dict[str, Any]) -> Any:
        return lambda: make_llm(cfg.llm, **{**cfg.llm_kwargs, **kw})

    ctxs = {name: EpisodeContext(cfg, runner.splits, factory(kw), runner._memory_paths()) for name, kw in variants}
    baseline = variants[0][0]
    header = {"run": str(root), "machine": machine_line(), "matmul_gflops_start": round(matmul_gflops(), 1),
              "variants": dict(variants), "baseline_every": args.every}
    rows: list[dict[str, Any]] = []
    print(f"replaying {len(items)} episodes of {root} ({header['machine']})", file=sys.stderr)
    for n, item in enumerate(items):
        for name, ctx in ctxs.items():
            if name == baseline and item.task.index % args.every:
                continue
            for step in replay_episode(ctx, item, committed[item.id]):
                rows.append({"agent": item.agent, "goal": item.task.index, "variant": name, **step})
        atomic_write_json(Path(args.out), {**header, "episodes_done": n + 1, "steps": rows})
        print(f"{n + 1}/{len(items)} {item.id}", file=sys.stderr)
    for ctx in ctxs.values():
        cache = getattr(ctx.llm, "prefix_cache", None)
        if cache is not None:
            print(f"prefix cache: {len(cache)} snapshots, {cache.nbytes / 2**20:.0f} MiB, {cache.hits} restores",
                  file=sys.stderr)
        ctx.close()
    header["matmul_gflops_end"] = round(matmul_gflops(), 1)
    table = summarize(rows, baseline)
    atomic_write_json(Path(args.out), {**header, "episodes_done": len(items), "steps": rows, "table": table})
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
