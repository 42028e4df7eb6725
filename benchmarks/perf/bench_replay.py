"""Replay a published run's test episodes through a backend setting, and compare step cost and actions.

A step's cost is measured on the study's own episodes, not on new ones: each committed test
episode of ``RUN`` (a folder under ``docs/study/``) is played again with the agents, memories and
settings of its ``config.json``, and at every step the agent's action is compared with the
committed one. The env is then stepped with the *committed* action (teacher forcing), so one
differing step does not derail the rest of the episode and every step is compared on the same
situation.

Each ``--variant NAME=JSON`` is a set of backend keyword arguments (``llm_kwargs``) that gets its
own model instance (the key ``llm`` swaps the model spec, e.g. ``{"llm": "gguf:<file>"}`` for
another quantisation of the same model); episodes are run in the committed run's order, variant
after variant for each episode, so that the machine's load falls alike on all of them. ``--goals a:b:step`` replays a
subset of the goals.

Per (row, variant) it prints steps, p50 and mean wall time of ``agent.act``, the share of prompt
tokens served from the KV cache, prefill tokens per step, how many actions equal the committed
ones, and the ratio of the baseline's p50 (the first variant) to each variant's.
A step whose action differs is kept in the JSON output with both actions, for a tie check.

    python -m rlem_gym.benchmarks.study.publish --restore docs/study/webshop-main runs/replay/webshop-main
    python -m rlem_gym.benchmarks.perf.bench_replay runs/replay/webshop-main \\
        --variant 'before={"prefix_cache_mb": 0}' --variant 'after={"prefix_cache_mb": 2048}' --goals 0:50:5 \\
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

import numpy as np

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.perf.measure import machine_line, matmul_gflops
from rlem_gym.llm.base import LLM, Completion
from rlem_gym.llm.llamacpp import LlamaCppBackend
from rlem_gym.llm.prefix_cache import PrefixCache, common_prefix


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
    """Play ``item`` with ``ctx``'s agent, forcing the committed actions; one dict per step.

    With a :class:`ReplayLLM` as the context's model, each step's LLM calls return the committed
    replies, and the step records the tokens each cache policy would have reused.
    """
    from rlem_gym.benchmarks.episode import fresh_llm_cache, seed_episode, short_hash

    agent = ctx.test_agent(item.agent, item.seed)
    env = ctx.env("test")
    seed_episode(agent, item.episode_seed)
    fresh_llm_cache(getattr(agent, "llm", None))
    obs, info = env.reset(seed=item.episode_seed, options=dict(item.task.options))
    agent.reset(obs, info)
    out = []
    script = getattr(agent, "llm", None)
    for rec in committed:
        if isinstance(script, ReplayLLM):
            script.script(rec)
        t0 = time.perf_counter()
        action = agent.act(obs, info)
        act_s = time.perf_counter() - t0
        st = agent.last_step
        forced = rec["action"]
        out.append(
            {
                "step": rec["step"],
                "action": action,
                "committed": forced,
                "same": action == forced,
                "same_prompt": (short_hash(st.prompt) if st.prompt else "") == rec["prompt_hash"],
                "act_s": round(act_s, 4),
                "prompt_tokens": int(st.prompt_tokens),
                "cached_tokens": int(st.cached_tokens),
                "completion_tokens": int(st.completion_tokens),
                **(script.step_counts() if isinstance(script, ReplayLLM) else {}),
            }
        )
        obs, reward, terminated, truncated, info = env.step(forced)
        agent.observe(forced, float(reward), terminated, truncated, info)
        if terminated or truncated:
            break
    return out


class ReplayLLM(LLM):
    """A stand-in model that returns a committed step's replies and counts what each cache policy reuses.

    Prompts are rendered and tokenized exactly as ``tokenizer`` (a :class:`LlamaCppBackend`) would
    run them; nothing is evaluated. For every call it counts the prompt tokens a backend would
    reuse (a) from the live context only, reset at each episode as the runner does, and (b) with a
    :class:`PrefixCache` of ``capacity_mb`` besides (``bytes_per_token`` of KV per token).
    """

    supports_constraint = True

    def __init__(self, tokenizer: Any, capacity_mb: float, bytes_per_token: int) -> None:
        self.tok = tokenizer
        self.name = f"replay:{tokenizer.name}"
        self.context_length = tokenizer.context_length
        self.cache = PrefixCache(int(capacity_mb * 2**20))
        self.bytes_per_token = bytes_per_token
        self.live: np.ndarray = np.zeros(0, dtype=np.int64)
        self.replies: list[str] = []
        self.counts = {"prompt": 0, "live": 0, "snapshot": 0, "completion": 0}

    def script(self, rec: dict[str, Any]) -> None:
        """The replies of the committed step ``rec``: one per LLM call (ReAct's calls are joined by newlines)."""
        text = rec["raw_output"]
        self.replies = text.split("\n") if rec["agent"].startswith("react") else [text]
        self.counts = dict.fromkeys(self.counts, 0)

    def step_counts(self) -> dict[str, int]:
        c = self.counts
        return {
            "sim_prompt_tokens": c["prompt"],
            "sim_live_reused": c["live"],
            "sim_snapshot_reused": c["snapshot"],
            "sim_completion_tokens": c["completion"],
        }

    def count_tokens(self, text: str) -> int:
        return self.tok.count_tokens(text)

    def reset_cache(self) -> None:
        self.live = np.zeros(0, dtype=np.int64)

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 128,
        stop: Any = None,
        temperature: float = 0.0,
        seed: int | None = None,
        response_prefix: str = "",
        constraint: Any = None,
    ) -> Completion:
        text = self.replies.pop(0) if self.replies else ""
        rendered, _ = self.tok.prompt_text(prompt, response_prefix)
        ids = np.asarray(self.tok._llm.tokenize(rendered.encode(), add_bos=True, special=True), dtype=np.int64)
        out = np.asarray(self.tok._llm.tokenize(text.encode(), add_bos=False, special=False), dtype=np.int64)
        last = len(ids) - 1  # the last prompt token is always evaluated, for its logits
        live = min(common_prefix(self.live, ids), last)
        # the backend's start with a prefix cache (LlamaCppBackend._start_from_longest_prefix)
        n_snap, _ = self.cache.longest(ids)
        align = LlamaCppBackend.PREFIX_ALIGN
        best = max(live, min(n_snap, last))
        snapshot = live + align * ((best - live) // align)
        if snapshot - live < LlamaCppBackend.MIN_RESTORE_GAIN:
            snapshot = live
        seq = np.concatenate([ids, out])  # a reply that ends at end-of-sequence had every token evaluated
        self.live = seq
        if not self.cache.covers(seq):
            self.cache.put(seq, bytes(len(seq) * self.bytes_per_token))
        for key, n in (("prompt", len(ids)), ("live", live), ("snapshot", snapshot), ("completion", len(out))):
            self.counts[key] += int(n)
        return Completion(text, len(ids), len(out), 0.0, "stop", cached_tokens=int(live))


def summarize(rows: list[dict[str, Any]], baseline: str) -> str:
    """The markdown table of a replay (see the module docstring)."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(r["agent"], r["variant"])].append(r)
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lines = [
        "| row | variant | steps | p50 s/step | mean s/step | KV-reused share | prefill tok/step (mean) "
        "| actions = committed | p50: baseline -> this (speed-up) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for agent in dict.fromkeys(r["agent"] for r in rows):
        for v in variants:
            rs = by[(agent, v)]
            if not rs:
                continue
            s = [r["act_s"] for r in rs]
            pt = sum(r["prompt_tokens"] for r in rs)
            ct = sum(r["cached_tokens"] for r in rs)
            same = sum(r["same"] for r in rs)
            base = [r["act_s"] for r in by[(agent, baseline)]]
            ratio = ""
            if v != baseline and base:
                b, a = statistics.median(base), statistics.median(s)
                ratio = f"{b:.2f} -> {a:.2f} ({b / a:.2f}x)"
            lines.append(
                f"| {agent} | {v} | {len(rs)} | {statistics.median(s):.2f} | {statistics.mean(s):.2f} "
                f"| {ct / pt:.1%} | {(pt - ct) / len(rs):.0f} | {same}/{len(rs)} | {ratio} |"
            )
    return "\n".join(lines)


def simulated_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of a ``--simulate`` replay: per row, the tokens reused and prefilled per step."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["agent"]].append(r)
    lines = [
        "| row | steps | prompt tok/step | reused: live context -> with prefix cache "
        "| prefill tok/step: live -> with cache (ratio) | reply tok/step |",
        "|---|---|---|---|---|---|",
    ]
    for agent, rs in by.items():
        n = len(rs)
        prompt = sum(r["sim_prompt_tokens"] for r in rs)
        live = sum(r["sim_live_reused"] for r in rs)
        snap = sum(r["sim_snapshot_reused"] for r in rs)
        out = sum(r["sim_completion_tokens"] for r in rs)
        lines.append(
            f"| {agent} | {n} | {prompt / n:.0f} | {live / prompt:.1%} -> {snap / prompt:.1%} "
            f"| {(prompt - live) / n:.0f} -> {(prompt - snap) / n:.0f} ({(prompt - live) / max(1, prompt - snap):.2f}x) "
            f"| {out / n:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder (restore a published one with `publish --restore`)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="backend keyword arguments of one variant; the first is the baseline",
    )
    p.add_argument(
        "--simulate",
        type=float,
        default=None,
        metavar="MB",
        help="no model run: replay the committed replies and count the tokens reused from the live "
        "context alone and with a prefix cache of MB megabytes (see ReplayLLM)",
    )
    p.add_argument(
        "--agent-kwargs",
        default="",
        metavar="JSON",
        help="agent settings to change, as the runner's --agent-kwargs (e.g. '{\"rememberer\": "
        '{"advice_draw": "episode"}}\'); prompts then differ from the committed ones',
    )
    p.add_argument(
        "--bytes-per-token",
        type=int,
        default=12_300,
        help="KV bytes per token for --simulate (12,300 measured for Qwen2.5-Coder-0.5B)",
    )
    p.add_argument("--agents", default="", help="comma-separated rows to replay (default: every LLM row)")
    p.add_argument("--goals", default="", help="goal positions a:b or a:b:step within the test split (default: all)")
    p.add_argument("--out", required=True, help="JSON output (rewritten after each episode)")
    args = p.parse_args(argv)

    from rlem_gym.benchmarks.config import BenchConfig
    from rlem_gym.benchmarks.build import uses_llm
    from rlem_gym.benchmarks.episode import EpisodeContext
    from rlem_gym.benchmarks.plan import plan
    from rlem_gym.benchmarks.runner import Runner
    from rlem_gym.llm import make_llm

    if args.simulate is None and not args.variant:
        p.error("give at least one --variant, or --simulate MB")
    if args.simulate is not None:
        args.variant = ["simulated={}"]
    variants: list[tuple[str, dict[str, Any]]] = []
    for spec in args.variant:
        name, sep, kw = spec.partition("=")
        if not sep or not name:
            p.error(f"--variant takes NAME=JSON, got {spec!r}")
        variants.append((name, json.loads(kw or "{}")))
    root = Path(args.run)
    cfg = BenchConfig.from_stored(json.loads((root / "config.json").read_text()))
    if args.agent_kwargs:
        cfg = cfg.replace(agent_kwargs={**cfg.agent_kwargs, **json.loads(args.agent_kwargs)})
    runner = Runner(cfg, out=root)
    train, test = runner._resolve_splits()
    _, items = plan(cfg, train, test)
    committed = committed_steps(root)
    wanted = [a for a in args.agents.split(",") if a] or [a for a in cfg.agents if uses_llm(a)]
    goals = range(*(int(x) for x in args.goals.split(":"))) if args.goals else range(len(test.tasks))
    items = [i for i in items if i.agent in wanted and i.task.index in goals and i.id in committed]

    def factory(kw: dict[str, Any]) -> Any:
        if args.simulate is not None:
            tokenizer = make_llm(cfg.llm, **cfg.llm_kwargs)
            return lambda: ReplayLLM(tokenizer, args.simulate, args.bytes_per_token)
        kw = dict(kw)
        spec = kw.pop("llm", cfg.llm)  # a variant may swap the model file (e.g. another quantisation)
        return lambda: make_llm(spec, **{**cfg.llm_kwargs, **kw})

    ctxs = {name: EpisodeContext(cfg, runner.splits, factory(kw), runner._memory_paths()) for name, kw in variants}
    baseline = variants[0][0]
    header = {
        "run": str(root),
        "machine": machine_line(),
        "matmul_gflops_start": round(matmul_gflops(), 1),
        "variants": dict(variants),
        "goals": args.goals or "all",
    }
    rows: list[dict[str, Any]] = []
    print(f"replaying {len(items)} episodes of {root} ({header['machine']})", file=sys.stderr)
    for n, item in enumerate(items):
        for name, ctx in ctxs.items():
            for step in replay_episode(ctx, item, committed[item.id]):
                rows.append({"agent": item.agent, "goal": item.task.index, "variant": name, **step})
        atomic_write_json(Path(args.out), {**header, "episodes_done": n + 1, "steps": rows})
        print(f"{n + 1}/{len(items)} {item.id}", file=sys.stderr)
    for ctx in ctxs.values():
        cache = getattr(ctx.llm, "prefix_cache", None)
        if cache is not None:
            print(
                f"prefix cache: {len(cache)} snapshots, {cache.nbytes / 2**20:.0f} MiB, {cache.hits} restores",
                file=sys.stderr,
            )
        ctx.close()
    header["matmul_gflops_end"] = round(matmul_gflops(), 1)
    table = simulated_table(rows) if args.simulate is not None else summarize(rows, baseline)
    atomic_write_json(Path(args.out), {**header, "episodes_done": len(items), "steps": rows, "table": table})
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
