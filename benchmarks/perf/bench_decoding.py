"""Free vs constrained action decoding, measured in one run: valid-action rate, fallback rate, step latency.

For each env and each mode the script runs the benchmark protocol (``rlem_gym.benchmarks.runner``)
on the same dev goals with the same model and settings, the memory starting from the env's
official initial pool and frozen (no training: the comparison is of decoding, not learning), then
reads every step from the runs' step logs:

- **valid %**: steps whose action came from the model (not the fallback) and that the env accepted;
- **fallback %**: steps where the reply held no valid action and the fallback policy chose;
- **step p50 / mean**: wall time of ``agent.act`` (retrieval, prompt building and every LLM call);
- the score, as a side note (too few goals for a comparison of agents).

Dev goals, not test goals (settings are chosen on them): WebShop ``train[20:23]``, WikiHow
``train_S1[0:3]``. Each (env, mode) run has its own folder under ``--out``, so a rerun resumes.

    python -m rlem_gym.benchmarks.perf.bench_decoding --llm qwen2.5-coder-0.5b:gguf --out runs/bench_decoding
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from rlem_gym.atomic import atomic_write_json, atomic_write_text
from rlem_gym.benchmarks.perf.measure import machine_line
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.benchmarks.rundir import iter_jsonl

#: env -> (dev split, initial pool)
DEV: dict[str, tuple[str, str]] = {
    "webshop": ("train[20:23]", "webshop:E0"),
    "wikihow": ("train_S1[0:3]", "wikihow:init"),
}
MODES = ("free", "constrained")


def step_stats(steps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Valid %, fallback %, act-latency p50/mean (s) and step count of one agent's test steps."""
    n = len(steps)
    if n == 0:
        return {"steps": 0}
    valid = sum(1 for s in steps if not s["fallback"] and not s.get("action_error"))
    fallbacks = sum(1 for s in steps if s["fallback"])
    act = [float(s.get("act_s", s.get("llm_s", 0.0))) for s in steps]
    return {
        "steps": n,
        "valid_pct": 100.0 * valid / n,
        "fallback_pct": 100.0 * fallbacks / n,
        "act_p50_s": statistics.median(act),
        "act_mean_s": statistics.fmean(act),
        "completion_tokens_mean": statistics.fmean(s.get("completion_tokens", 0) for s in steps),
    }


def run_mode(args: argparse.Namespace, env: str, mode: str) -> dict[str, Any]:
    """Run (or resume) one (env, mode) benchmark; return per-agent step stats and scores."""
    from rlem_gym.benchmarks.runner import Runner

    split, pool = DEV[env]
    out = Path(args.out) / f"{env}-{mode}"
    cfg = BenchConfig(
        env=env,
        agents=tuple(args.agents.split(",")),
        llm=args.llm,
        llm_kwargs=json.loads(args.llm_kwargs),
        action_decoding=mode,
        epochs=0,
        init_memory=pool,
        test_split=split,
        max_steps=args.max_steps,
        max_tokens=args.max_tokens,
        out=str(out),
        progress=False,
    ).validate()
    results = Runner(cfg).run()
    steps = [s for s in iter_jsonl(out / "episodes.jsonl") if s.get("phase") == "test"]
    per_agent = {}
    for row in results["rows"]:
        mine = [s for s in steps if s["agent"] == row["agent"]]
        per_agent[row["agent"]] = {**step_stats(mine), "score": row["score"]["mean"], "episodes": row["episodes"]}
    return per_agent


def markdown(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One line per (env, agent, mode)."""
    lines = [
        "| Env | Agent | Mode | Steps | Valid % | Fallback % | Step p50 s | Step mean s | Tokens out/step | Score |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, agents in table.items():
        env, mode = key.split("/")
        for agent, s in agents.items():
            if not s.get("steps"):
                continue
            lines.append(
                f"| {env} | {agent} | {mode} | {s['steps']} | {s['valid_pct']:.1f} | {s['fallback_pct']:.1f} | "
                f"{s['act_p50_s']:.2f} | {s['act_mean_s']:.2f} | {s['completion_tokens_mean']:.1f} | "
                f"{s['score']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m rlem_gym.benchmarks.perf.bench_decoding", description=__doc__.split("\n")[0]
    )
    p.add_argument("--llm", default="qwen2.5-coder-0.5b:gguf", help="make_llm spec")
    p.add_argument("--llm-kwargs", default="{}", help="backend keywords as JSON")
    p.add_argument("--envs", default="webshop,wikihow")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--agents", default="rememberer,static,react")
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--out", default="runs/bench_decoding")
    args = p.parse_args(argv)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for env in args.envs.split(","):
        for mode in args.modes.split(","):
            table[f"{env}/{mode}"] = run_mode(args, env, mode)
    text = markdown(table)
    print(
        f"{machine_line()}\nmodel {args.llm} {args.llm_kwargs}; dev goals {', '.join(f'{e}: {DEV[e][0]}' for e in DEV)}; "
        f"max {args.max_steps} steps, {args.max_tokens} tokens per call; frozen initial pools\n"
    )
    print(text)
    atomic_write_json(
        Path(args.out) / "bench_decoding.json", {"llm": args.llm, "table": table, "machine": machine_line()}
    )
    atomic_write_text(Path(args.out) / "bench_decoding.md", text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
