"""What the Rememberer retrieved in a run's test episodes: whose experience, and with what Q.

For every test step of one Rememberer row it looks up the retrieved record ids in the memory that
row played with (frozen at test time) and counts:

- steps whose retrieved records all have max Q <= 0: their advice is invented (``--random-advice``)
  or Discouraged only, so the exemplars carry no learned preference;
- steps that retrieved at least one record with a positive Q;
- which task the retrieved records came from (the initial pool's, or a training goal's);
- for each record with an Encouraged action (Q > 0): on how many steps (and goals) it was retrieved,
  and on how many of those the executed action was its Encouraged one;
- what the executed action was, against the retrieved records' real advice: a record's top action
  when its Q > 0 (shown as Encouraged), or one of its actions with Q <= 0 (shown as Discouraged).
  Invented advice (``--random-advice``) is drawn at render time and not logged, so it is not counted.

    python -m rlem_gym.benchmarks.study.probes.retrieval_diagnosis runs/study/webshop-main rememberer [SEED]

Reads only the run's step log and the memory the row was tested with (``RunDir.memory_dir``).
"""

import collections
import sys

from rlem_gym.benchmarks.rundir import RunDir, iter_jsonl
from rlem_gym.memory.inspect import read_saved_memory


def main(run_dir: str, agent: str, seed: int = 0) -> None:
    run = RunDir(run_dir)
    _, views = read_saved_memory(run.memory_dir(seed, agent) / "memory")
    records = {v.id: v for v in views}
    steps = positive = took_encouraged = took_discouraged = 0
    by_task: collections.Counter[str] = collections.Counter()
    discouraged_taken: collections.Counter[str] = collections.Counter()
    goals = set()
    shown: dict[int, list[tuple[int, bool]]] = collections.defaultdict(list)  # record id -> (goal, copied)
    for row in iter_jsonl(run.step_log_path):
        if row.get("phase") != "test" or row.get("agent") != agent or row.get("seed") != seed:
            continue
        steps += 1
        goals.add(row["goal"])
        got = [records[i] for i in row["retrieved_ids"] if i in records]
        learned = [v for v in got if v.actions and v.actions[0].q > 0]  # actions are sorted by Q, highest first
        positive += bool(learned)
        by_task.update(" ".join(v.situation.task.split())[:60] for v in got)
        for v in learned:
            shown[v.id].append((row["goal"], row["action"] == v.actions[0].action))
        encouraged = {v.actions[0].action for v in learned}
        discouraged = {a.action for v in got for a in v.actions if a.q <= 0}
        took_encouraged += row["action"] in encouraged
        if row["action"] in discouraged and row["action"] not in encouraged:
            took_discouraged += 1
            discouraged_taken[row["action"][:60]] += 1
    if not steps:
        raise SystemExit(f"no test steps of {agent!r} (seed {seed}) in {run.step_log_path}")
    print(f"{agent}: {steps} test steps over {len(goals)} goals")
    print(f"- steps with a retrieved record of positive Q: {positive} ({100 * positive / steps:.0f}%)")
    print(
        f"- steps whose retrieved records all have max Q <= 0: {steps - positive} ({100 * (steps - positive) / steps:.0f}%)"
    )
    print(
        f"- executed action = a retrieved record's Encouraged action (Q > 0): {took_encouraged} ({100 * took_encouraged / steps:.0f}%)"
    )
    print(
        f"- executed action = a retrieved record's Discouraged action (Q <= 0): {took_discouraged} ({100 * took_discouraged / steps:.0f}%)"
    )
    for action, n in discouraged_taken.most_common(5):
        print(f"  - {n:4d}  {action}")
    print("- records with an Encouraged action (Q > 0): retrieved on steps (goals), its Encouraged action executed:")
    for rid, seen in sorted(shown.items(), key=lambda kv: -len(kv[1])):
        v = records[rid]
        where = " ".join((v.situation.instruction or v.situation.task).split())[:50]
        print(
            f"  - record {rid} ({where}; {v.actions[0].action[:40]}, Q {v.actions[0].q:.2f}): "
            f"{len(seen)} ({len({g for g, _ in seen})}), executed {sum(c for _, c in seen)}"
        )
    print("- retrieved records by source task (count of record retrievals):")
    for task, n in by_task.most_common():
        print(f"  - {n:4d}  {task}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
