"""Goal-by-goal counts of a study run that the results table does not show (cited in docs/study/README.md).

    python -m rlem_gym.benchmarks.study.probes.goal_stats runs/study/webshop-main

Over the test goals that every agent finished: where the trained Rememberer scored higher / lower /
the same as each other agent, and the episodes with one action 3+ times in a row. On WebShop also
the goals where each agent bought, the episodes with 3+ ``click[back to search]``, and those that
took the heuristic's path on the same goal: a search (its query may differ), then the same clicks
(result, ``buy now``). On WikiHow also the actions after the first step by kind (``INPUT(1)``: a query typed again on the
results screen), and per task type (its sub-goal sequence, e.g.
``search-article-about``), the tasks and, for each agent, on how many it opened the target article
(sub-goal 2) and finished the task, and the tasks where the trained Rememberer scored higher.
"""

import sys
from collections import Counter, defaultdict

from rlem_gym.benchmarks.rundir import RunDir, iter_jsonl, read_json
from rlem_gym.envs.wikihow.env import parse_action

REF = "rememberer"


def max_repeat(actions: list[str]) -> int:
    best = run = 1 if actions else 0
    for prev, cur in zip(actions, actions[1:]):
        run = run + 1 if cur == prev else 1
        best = max(best, run)
    return best


def task_type(label: str) -> str:
    """``search_x-article_x-about_page`` -> ``search-article-about``."""
    return "-".join(part.split("_", 1)[0] for part in label.split("-"))


def action_kind(action: str) -> str:
    """``INPUT(1, some query)`` -> ``INPUT(1)``; ``CLICK(12)`` -> ``CLICK``; ``SCROLL(DOWN)`` -> ``SCROLL``."""
    verb, arg, _ = parse_action(action)
    return f"INPUT({arg[0]})" if verb == "INPUT" else verb


def wikihow_stats(
    records: dict[int, dict[str, dict]], goals: list[int], agents: list[str], kept: dict[tuple[str, int], list[str]]
) -> None:
    print("actions after the first step, by kind:")
    for agent in agents:
        kinds = Counter(action_kind(a) for (who, _), acts in kept.items() if who == agent for a in acts[1:])
        print(f"  {agent}: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    kind_of = {g: task_type(records[g][REF]["task_label"]) for g in goals}
    print("task type: tasks; per agent: article opened / task finished")
    for kind, n in Counter(kind_of.values()).most_common():
        cells = []
        for agent in agents:
            recs = [records[g][agent] for g in goals if kind_of[g] == kind]
            opened = sum(r["subgoals_done"] >= 2 for r in recs)
            cells.append(f"{agent} {opened}/{sum(bool(r['success']) for r in recs)}")
        print(f"  {kind}: {n}; " + ", ".join(cells))
    for other in agents:
        if other != REF:
            better = [
                f"{g} ({records[g][REF]['task_label'].split('-')[0][7:]}: "
                f"{records[g][REF]['subgoals_done']} vs {records[g][other]['subgoals_done']} sub-goals)"
                for g in goals
                if records[g][REF]["normalized_return"] > records[g][other]["normalized_return"]
            ]
            print(f"tasks where {REF} beat {other}: " + ("; ".join(better) or "none"))


def main(run_dir: str) -> None:
    run = RunDir(run_dir)
    env = read_json(run.config_path)["config"]["env"]
    records: dict[int, dict[str, dict]] = defaultdict(dict)
    for rec in run.records():
        if rec.get("phase") == "test" and rec.get("status", "ok") == "ok":
            records[int(rec["task_index"])][rec["agent"]] = rec
    agents = sorted({a for recs in records.values() for a in recs})
    goals = sorted(g for g, recs in records.items() if len(recs) == len(agents))
    steps: dict[tuple[str, int], list[str]] = defaultdict(list)
    for row in iter_jsonl(run.step_log_path):
        if row.get("phase") == "test" and int(row["goal"]) in records:
            steps[row["agent"], int(row["goal"])].append(row["action"])
    finished = set(goals)
    kept = {k: v for k, v in steps.items() if k[1] in finished}
    print(f"{len(goals)} test goals finished by every agent ({goals[0]}-{goals[-1]})")
    for other in agents:
        if other == REF:
            continue
        score = {g: (records[g][REF]["normalized_return"], records[g][other]["normalized_return"]) for g in goals}
        hi = sum(ref > it for ref, it in score.values())
        lo = sum(ref < it for ref, it in score.values())
        print(f"{REF} vs {other}: higher {hi}, lower {lo}, same {len(goals) - hi - lo}")
    print(
        "episodes with one action 3+ times in a row:",
        dict(Counter(a for (a, _), acts in kept.items() if max_repeat(acts) >= 3)),
    )
    if env == "wikihow":
        wikihow_stats(records, goals, agents, kept)
        return
    print("goals with a purchase:", dict(Counter(a for (a, _), acts in kept.items() if "click[buy now]" in acts)))
    print(
        "episodes with 3+ click[back to search]:",
        dict(Counter(a for (a, _), acts in kept.items() if acts.count("click[back to search]") >= 3)),
    )
    if "heuristic" in agents:
        # the heuristic's query is the instruction without its price clause; the LLM rows write their own,
        # so compare the path: a search, then the same result click and the same clicks after it
        def path(acts: list[str]) -> list[str]:
            return ["search" if a.startswith("search[") else a for a in acts]

        same = Counter(
            a
            for (a, g), acts in kept.items()
            if a != "heuristic" and path(acts) == path(kept.get(("heuristic", g), []))
        )
        print("episodes on the heuristic's path (search, the same result, buy now):", dict(same))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
