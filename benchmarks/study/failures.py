"""Where each agent loses reward: a failure analysis of a run's test episodes.

    python -m rlem_gym.benchmarks.study.failures runs/study/webshop-main [--no-queries]

Every test episode gets one outcome and any number of flags, counted per agent.

WebShop outcomes (from the record's ``purchased`` / ``reward_details``, kept since the study):

- ``success``: bought with reward 1;
- ``wrong product type``: bought a product whose type misses the goal (``r_type < 1``);
- ``missing attributes`` / ``wrong options`` / ``over the price``: bought the right type, lost
  reward on that component (the first one that lost reward, in this order);
- ``never bought``: no purchase within the step cap.

WikiHow outcomes: ``success`` (every sub-goal), else the first sub-goal the episode missed, read from
the record's ``subgoals_done`` and the task's chain: ``no search`` (no search with a title keyword
was submitted), ``article not opened`` (searched, but the target article never came on screen),
then ``about page`` / ``author page`` / ``category page`` / ``reference list`` / ``next article
not opened`` for the later sub-goals. A record without ``subgoals_done`` or with an unknown task
counts as ``partial`` (some reward) or ``no search`` (none).

Flags (several per episode):

- ``loop``: the same action taken 3 or more times in the episode;
- ``invalid actions``: the env rejected at least one action;
- ``fallback steps``: at least one step's action came from the fallback policy, not the model;
- WebShop ``query misses the goal``: no search of the episode shows the goal's own product on the
  first results page (replayed through the env's search engine). Other products can satisfy a
  synthetic goal, so this is a coarse view of query quality, not a verdict.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any, Iterable

from rlem_gym.benchmarks.rundir import RunDir, read_json

WEBSHOP_OUTCOMES = (
    "success",
    "wrong product type",
    "missing attributes",
    "wrong options",
    "over the price",
    "bought, other loss",
    "never bought",
)
#: what a WikiHow episode missed first, by the sub-goal's kind ("article" after the first is "next article")
WIKIHOW_MISSED = {
    "search": "no search",
    "article": "article not opened",
    "about": "about page not opened",
    "author": "author page not opened",
    "category": "category page not opened",
    "reference": "reference list not opened",
    "next article": "next article not opened",
}
WIKIHOW_OUTCOMES = ("success", *WIKIHOW_MISSED.values(), "partial")
FLAGS = ("loop", "invalid actions", "fallback steps")
WEBSHOP_FLAGS = (*FLAGS, "query misses the goal")


def webshop_outcome(record: dict[str, Any]) -> str:
    """The outcome of a WebShop episode record (see the module docstring)."""
    details = record.get("reward_details")
    if not details and not record.get("purchased"):
        return "never bought"
    if float(record.get("return", 0.0)) >= 1.0 - 1e-9:
        return "success"
    details = details or {}
    if float(details.get("r_type", 1.0)) < 1.0:
        return "wrong product type"
    if float(details.get("r_att", 1.0)) < 1.0:
        return "missing attributes"
    if float(details.get("r_option", 1.0)) < 1.0:
        return "wrong options"
    if details.get("r_price") is False or details.get("r_price") == 0:
        return "over the price"
    return "bought, other loss"


def wikihow_outcome(record: dict[str, Any]) -> str:
    """The outcome of a WikiHow episode record (see the module docstring)."""
    if record.get("success"):
        return "success"
    from rlem_gym.envs.wikihow.tasks import all_tasks

    task = all_tasks().get(str(record.get("task_label", "")))
    done = -1 if record.get("subgoals_done") is None else int(record["subgoals_done"])
    if task is None or not 0 <= done < len(task.subgoals):
        return "partial" if float(record.get("return", 0.0)) > 0 else WIKIHOW_MISSED["search"]
    kind = task.subgoals[done].kind
    if kind == "article" and done > 1:
        kind = "next article"
    return WIKIHOW_MISSED.get(kind, "partial")


def looped(actions: Iterable[str], times: int = 3) -> bool:
    """Whether one action was taken ``times`` or more times."""
    counts = collections.Counter(actions)
    return bool(counts) and max(counts.values()) >= times


class QueryChecker:
    """Replays WebShop search queries through the env's search engine (same catalog and goals as the run)."""

    def __init__(self, config: dict[str, Any]) -> None:
        import gymnasium as gym

        import rlem_gym  # noqa: F401  (registers the envs)

        kwargs = dict(config.get("env_kwargs") or {})
        kwargs["shown_results"] = config.get("shown_results", 3)
        self.env = gym.make("rlem_gym/WebShop-v0", **kwargs).unwrapped
        self.shown = int(config.get("shown_results") or 10)

    def goal_shown(self, goal_index: int, queries: list[str]) -> bool:
        """Whether any of ``queries`` shows goal ``goal_index``'s product on the first results page."""
        env = self.env
        asin = env.goals[goal_index]["asin"]
        for query in queries:
            hits = env.search_index.search(query, self.shown)[: self.shown]
            if any(env.catalog.products[i]["asin"] == asin for i in hits):
                return True
        return False


def _goal_index(record: dict[str, Any]) -> int | None:
    label = str(record.get("task_label", ""))
    return int(label.split()[-1]) if label.startswith("goal ") else None


def analyse(run_dir: str | Path, check_queries: bool = True) -> dict[str, Any]:
    """Per agent: episodes, outcome counts and flag counts, over the run's test episodes."""
    rd = RunDir(run_dir)
    config = (read_json(Path(run_dir) / "config.json") or {}).get("config", {})
    env = config.get("env", "webshop")
    outcomes = WEBSHOP_OUTCOMES if env == "webshop" else WIKIHOW_OUTCOMES
    checker = QueryChecker(config) if env == "webshop" and check_queries else None
    flags = WEBSHOP_FLAGS if checker is not None else FLAGS  # no column for a check that was not run
    table: dict[str, dict[str, Any]] = {}
    for rec in rd.records():
        if rec.get("phase") != "test" or rec.get("status", "ok") != "ok":
            continue
        row = table.setdefault(
            rec["agent"], {"episodes": 0, "outcomes": dict.fromkeys(outcomes, 0), "flags": dict.fromkeys(flags, 0)}
        )
        row["episodes"] += 1
        row["outcomes"][webshop_outcome(rec) if env == "webshop" else wikihow_outcome(rec)] += 1
        actions = [str(a) for a in rec.get("actions", [])]
        row["flags"]["loop"] += looped(actions)
        row["flags"]["invalid actions"] += int(rec.get("invalid_actions", 0)) > 0
        row["flags"]["fallback steps"] += int(rec.get("fallbacks", 0)) > 0
        goal = _goal_index(rec)
        if checker is not None and goal is not None:
            queries = [a[len("search[") : -1] for a in actions if a.startswith("search[") and a.endswith("]")]
            row["flags"]["query misses the goal"] += not checker.goal_shown(goal, queries)
    agents = config.get("agents") or sorted(table)
    return {
        "env": env,
        "outcomes": list(outcomes),
        "flags": list(flags),
        "agents": {a: table[a] for a in agents if a in table},
    }


def markdown(result: dict[str, Any]) -> str:
    """The analysis as a markdown table: one row per agent, counts of episodes."""
    cols = result["outcomes"] + result["flags"]
    lines = ["| Agent | N | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for agent, row in result["agents"].items():
        cells = [row["outcomes"][c] for c in result["outcomes"]] + [row["flags"][c] for c in result["flags"]]
        lines.append(f"| {agent} | {row['episodes']} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run folder (the --out of a bench run)")
    p.add_argument("--no-queries", action="store_true", help="skip replaying WebShop search queries")
    args = p.parse_args(argv)
    if not (Path(args.run_dir) / "config.json").is_file():
        print(f"failures: {args.run_dir} is not an rlem-gym run folder (no config.json)", file=sys.stderr)
        return 2
    print(markdown(analyse(args.run_dir, check_queries=not args.no_queries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
