"""Can the model read the goal? A single-step probe on WebShop item pages (dev goals, never test goals).

For each ``train`` goal in the given range whose product page offers at least one of the goal's
option values, the goal oracle walks to that page (search the product's title, click it). There,
with constrained decoding over the page's valid actions, the model picks one click:

- ``rememberer``: the study's frozen Rememberer (its prompt, exemplars from a saved memory, the
  oracle's steps as its last actions);
- ``plain``: the instruction, the page and its valid actions, with no exemplar and no advice.

A row says whether the click is one of the goal's option values (``goal_option``), another
option value (``other_option``), ``buy now``, or anything else. The summary gives each rate with a
95% interval that resamples products (cluster bootstrap), since goals share products, and the
chance rate: how often a uniformly random valid click would be a goal option on the same pages.
``--summary A.jsonl B.jsonl ...`` prints one table of several runs. ``--decoding scored`` picks
the click as the most likely whole valid action (``action_decoding="scored"``) instead of token by
token under the constraint (``constrained``, the study's setting).

    python -m rlem_gym.benchmarks.study.probes.option_probe --model qwen2.5-coder-0.5b:gguf \\
        --prompt plain --goals 20:200 --pages 100 --out docs/study/probes/option_probe/0.5b-plain.jsonl

``--memory`` is the Rememberer's saved memory (default: ``webshop-main``'s trained memory after
epoch 3; restore it with ``python -m rlem_gym.benchmarks.study.publish --restore
docs/study/webshop-main runs/study/webshop-main``). ``--pages-only`` lists the pages without an LLM.
A rerun with the same ``--out`` skips the pages already written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator


from rlem_gym.agents.oracle import WebShopGoalPolicy
from rlem_gym.agents.variants import parse_variant
from rlem_gym.benchmarks.build import Builder
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.benchmarks.stats import cluster_bootstrap_ci
from rlem_gym.benchmarks.study.probes import STUDY_DOCS

CONFIG = STUDY_DOCS / "webshop-main" / "config.json"
DEFAULT_MEMORY = Path("runs/study/webshop-main/train/seed0/memory_epoch03")
PROMPTS = ("rememberer", "plain")
DECODINGS = ("constrained", "scored")
#: oracle steps allowed to reach the goal product's page
MAX_WALK = 8
PLAIN_PROMPT = """\
Here is a shopping instruction and the web page I am on. I answer with the one action to take next, \
written exactly as one of the available actions.

Instruction: {instruction}

Page: {page}

Available actions:
{actions}

Action: """


def _key(text: Any) -> str:
    return " ".join(str(text).split()).lower()


def _clickables(info: dict[str, Any]) -> list[str]:
    return [_key(c) for c in (info.get("available_actions") or {}).get("clickables", ())]


def _on_item_page(info: dict[str, Any], asin: str) -> bool:
    return info.get("page") == "item" and _key(info.get("asin", "")) == asin


def item_pages(env: Any, first: int, last: int) -> Iterator[dict[str, Any]]:
    """Each goal's product page, reached by the oracle, when it offers one of the goal's option values.

    Yields the goal index, the oracle's walk (obs/info at each step and the actions), the goal's
    option values on the page, and every option value on the page.
    """
    oracle = WebShopGoalPolicy()
    catalog = env.unwrapped.catalog
    for index in range(first, last):
        obs, info = env.reset(seed=0, options={"task_index": index})
        oracle.reset(obs, info)
        asin = _key(oracle.goal["asin"])
        start = (obs, info)
        walk: list[tuple[str, float, dict[str, Any]]] = []
        while len(walk) < MAX_WALK and not _on_item_page(info, asin):
            action, _ = oracle.act(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            walk.append((action, float(reward), info))
            if terminated or truncated:
                break
        if not walk or not _on_item_page(info, asin):
            continue
        clickables = set(_clickables(info))
        wanted = oracle.wanted_options({}, clickables)
        if not wanted:
            continue
        product = catalog.by_asin[oracle.goal["asin"]]
        options = sorted({_key(v) for values in product["options"].values() for v in values} & clickables)
        yield {
            "goal": index,
            "asin": _key(oracle.goal["asin"]),
            "instruction": info.get("instruction", ""),
            "wanted": wanted,
            "options": options,
            "clickables": len(clickables),
            "start": start,
            "walk": walk,
            "obs": obs,
            "info": info,
        }


def classify(action: str, page: dict[str, Any]) -> str:
    """``goal_option``, ``other_option``, ``buy_now`` or ``other``."""
    value = action[len("click[") : -1] if action.startswith("click[") and action.endswith("]") else None
    if value in page["wanted"]:
        return "goal_option"
    if value in page["options"]:
        return "other_option"
    if value == "buy now":
        return "buy_now"
    return "other"


def ask_rememberer(agent: Any, page: dict[str, Any]) -> tuple[str, int]:
    """The frozen Rememberer's click on the page, its last actions the oracle's walk."""
    obs0, info0 = page["start"]
    agent.reset(obs0, info0)
    for action, reward, info in page["walk"]:
        agent.observe(action, reward, False, False, info)
    action = agent.act(page["obs"], page["info"])
    return action, agent.last_step.prompt_tokens


def ask_plain(llm: Any, adapter: Any, page: dict[str, Any], decoding: str = "constrained") -> tuple[str, int]:
    """The model's click given only the instruction, the page and its valid actions."""
    info = page["info"]
    actions = [f"click[{c}]" for c in (info.get("available_actions") or {}).get("clickables", ())]
    prompt = PLAIN_PROMPT.format(instruction=page["instruction"], page=page["obs"], actions="\n".join(actions))
    constraint = adapter.action_constraint(info)
    if decoding == "scored":
        literals = list(constraint.literals)
        scores = llm.score(prompt, literals)
        return literals[scores.best()], scores.prompt_tokens
    reply = llm.generate(prompt, max_tokens=48, temperature=0.0, constraint=constraint)
    return reply.text.strip(), reply.prompt_tokens


OUTCOMES = ("goal_option", "other_option", "buy_now", "other")


def summary_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """One markdown row per probe run: each outcome's rate with a 95% cluster-bootstrap CI over products.

    The first row is chance: a uniformly random valid click on the same pages.
    """
    head = "| run | pages | products | " + " | ".join(OUTCOMES) + " |"
    lines = [head, "|" + "---|" * (3 + len(OUTCOMES))]
    for i, (name, rows) in enumerate(runs.items()):
        clusters = [r["asin"] for r in rows]
        if i == 0:
            chance = [len(r["wanted"]) / r["clickables"] for r in rows]
            lines.append(
                f"| chance (random valid click) | {len(rows)} | {len(set(clusters))} | {_rate(chance, clusters)} | | | |"
            )
        lines.append(_outcome_row(name, rows))
    return "\n".join(lines)


def _rate(values: list[float], clusters: list[str]) -> str:
    """A rate in percent with its 95% cluster-bootstrap CI over ``clusters``."""
    est = cluster_bootstrap_ci(values, clusters, seed=0)
    return f"{100 * est.mean:.1f} [{100 * est.lo:.1f}, {100 * est.hi:.1f}]"


def _outcome_row(name: str, rows: list[dict[str, Any]]) -> str:
    """``| name | N | products | rate per outcome |`` with product-cluster CIs."""
    clusters = [r["asin"] for r in rows]
    cells = [_rate([float(r["outcome"] == outcome) for r in rows], clusters) for outcome in OUTCOMES]
    return f"| {name} | {len(rows)} | {len(set(clusters))} | " + " | ".join(cells) + " |"


def episode_table(run_dirs: list[Path], env: Any) -> str:
    """The whole-episode view from published study runs' records (no LLM): in each test episode that
    opened the goal's own product, what came next: a goal option, another option, buy now, or other.

    One row per agent over all runs given (runs on the same goals for one agent add up), with
    cluster-bootstrap CIs over products.
    """
    import gzip
    import re

    oracle = WebShopGoalPolicy()
    catalog = env.unwrapped.catalog
    goals: dict[int, dict[str, Any]] = {}
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for run in run_dirs:
        with gzip.open(run / "records.jsonl.gz", "rt", encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        for rec in records:
            if rec.get("phase") != "test" or rec.get("status", "ok") != "ok":
                continue
            index = int(re.search(r"\d+", rec["task_label"]).group())
            if index not in goals:
                obs, info = env.reset(seed=0, options={"task_index": index})
                oracle.reset(obs, info)
                goal = oracle.goal
                product = catalog.by_asin[goal["asin"]]
                options = {_key(v) for values in product["options"].values() for v in values}
                goals[index] = {
                    "asin": _key(goal["asin"]),
                    "wanted": oracle.wanted_options({}, options),
                    "options": sorted(options),
                }
            goal = goals[index]
            actions = [_key(a) for a in rec["actions"]]
            opened = f"click[{goal['asin']}]"
            if opened not in actions or not goal["wanted"]:
                continue
            nxt = actions[actions.index(opened) + 1 : actions.index(opened) + 2]
            outcome = classify(nxt[0], goal) if nxt else "other"
            by_agent.setdefault(_short_agent(rec["agent"]), []).append(
                {"asin": goal["asin"], "outcome": outcome, "goal": index}
            )
    lines = ["| agent | episodes | products | " + " | ".join(OUTCOMES) + " |", "|" + "---|" * (3 + len(OUTCOMES))]
    lines += [_outcome_row(agent, rows) for agent, rows in sorted(by_agent.items())]
    return "\n".join(lines)


def _short_agent(label: str) -> str:
    """A frozen trained memory (``rememberer[init=...memory_epoch03]@untrained``) reads as the trained row."""
    if label.startswith("rememberer[init=") and "memory_epoch03" in label:
        return "rememberer (trained)"
    return "rememberer (trained)" if label == "rememberer" else label


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b:gguf")
    ap.add_argument("--prompt", choices=PROMPTS, default="plain")
    ap.add_argument("--decoding", choices=DECODINGS, default="constrained", help="how the click is chosen")
    ap.add_argument("--goals", default="20:200", help="train goal range first:last (dev goals)")
    ap.add_argument("--pages", type=int, default=100, help="stop after this many pages")
    ap.add_argument("--memory", default=str(DEFAULT_MEMORY), help="the Rememberer's saved memory")
    ap.add_argument("--out", type=Path, help="JSON lines, one per page (resumed when it exists)")
    ap.add_argument("--pages-only", action="store_true", help="list the pages; no LLM")
    ap.add_argument("--summary", type=Path, nargs="+", help="print the table of these outputs (same pages) and stop")
    ap.add_argument(
        "--episodes", type=Path, nargs="+", help="published WebShop study runs: the whole-episode table, then stop"
    )
    args = ap.parse_args(argv)
    if args.summary:
        runs = {p.stem: read_rows(p) for p in args.summary}
        if len({tuple(r["goal"] for r in rows) for rows in runs.values()}) > 1:
            ap.error("--summary: the outputs probe different pages; compare runs over the same goals")
        print(summary_table(runs))
        return 0
    first, last = (int(x) for x in args.goals.split(":"))
    if not 0 <= first < last:
        ap.error(f"--goals {args.goals}: want first:last with 0 <= first < last")

    cfg = BenchConfig(**json.loads(CONFIG.read_text())["config"])
    build = Builder(cfg)
    if args.episodes:
        print(episode_table(args.episodes, build.env({"split": "test"})))
        return 0
    env = build.env({"split": "train"})
    done: dict[int, dict[str, Any]] = {}
    if args.out is not None and args.out.exists():
        done = {r["goal"]: r for r in read_rows(args.out)}
    llm = agent = adapter = None
    if not args.pages_only:
        from rlem_gym.agents.adapters import get_adapter
        from rlem_gym.llm import make_llm

        llm = make_llm(args.model)
        adapter = get_adapter("webshop")
        if args.prompt == "rememberer":
            if not Path(args.memory, "MANIFEST.json").exists():
                ap.error(f"--memory {args.memory}: no saved memory there (see --help to restore the study's)")
            label = "rememberer" if args.decoding == "constrained" else f"rememberer[action_decoding={args.decoding}]"
            agent = build.agent(parse_variant(label), llm, build.load_memory(args.memory)).eval()
    rows = []
    out = args.out.open("a") if args.out is not None and not args.pages_only else None
    try:
        for page in item_pages(env, first, last):
            if len(rows) >= args.pages:
                break
            row = {k: page[k] for k in ("goal", "asin", "wanted", "options", "clickables")}
            if args.pages_only:
                rows.append(row)
                print(json.dumps(row), flush=True)
                continue
            if page["goal"] in done:
                rows.append(done[page["goal"]])
                continue
            ask = ask_rememberer if agent is not None else None
            action, tokens = ask(agent, page) if ask else ask_plain(llm, adapter, page, args.decoding)
            row.update(
                model=args.model, prompt=args.prompt, decoding=args.decoding, action=action, prompt_tokens=tokens
            )
            row["outcome"] = classify(action, page)
            rows.append(row)
            if out is not None:
                out.write(json.dumps(row) + "\n")
                out.flush()
            print(json.dumps(row), flush=True)
    finally:
        if out is not None:
            out.close()
        if llm is not None:
            llm.close()
    if not args.pages_only:
        print(summary_table({f"{args.model} {args.prompt} {args.decoding}": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
