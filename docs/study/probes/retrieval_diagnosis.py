"""What the Rememberer retrieved in a run's test episodes: whose experience, and with what Q.

For every test step of one Rememberer row it looks up the retrieved record ids in the memory that
row played with (frozen at test time) and counts:

- steps whose retrieved records all have max Q <= 0: their advice is invented (``--random-advice``)
  or Discouraged only, so the exemplars carry no learned preference;
- steps that retrieved at least one record with a positive Q;
- which task the retrieved records came from (the initial pool's, or a training goal's).

    python docs/study/probes/retrieval_diagnosis.py runs/study/webshop-main rememberer memory_seed0/memory

Reads only the run's step log (``episodes.jsonl``) and the saved memory's records JSON.
"""
import collections
import json
import sys
from pathlib import Path


def load_records(memory_dir: Path) -> tuple[dict[int, dict], list[str]]:
    files = sorted(memory_dir.glob("records-*.json"))
    if len(files) != 1:
        raise SystemExit(f"{memory_dir}: expected one records-*.json, found {len(files)}")
    data = json.loads(files[0].read_text())
    return {r["id"]: r for r in data["records"]}, data["tasks"]


def max_q(record: dict) -> float:
    return max((row[1] for table in record["tables"] for row in table), default=0.0)


def main(run_dir: str, agent: str, memory: str) -> None:
    root = Path(run_dir)
    records, tasks = load_records(root / memory)
    steps = positive = 0
    by_task: collections.Counter[str] = collections.Counter()
    goals = set()
    with open(root / "episodes.jsonl") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("phase") != "test" or row.get("agent") != agent:
                continue
            steps += 1
            goals.add(row["goal"])
            got = [records[i] for i in row["retrieved_ids"] if i in records]
            if any(max_q(r) > 0 for r in got):
                positive += 1
            for r in got:
                by_task[tasks[r["task"]][:60]] += 1
    if not steps:
        raise SystemExit(f"no test steps of {agent!r} in {root / 'episodes.jsonl'}")
    print(f"{agent}: {steps} test steps over {len(goals)} goals")
    print(f"- steps with a retrieved record of positive Q: {positive} ({100 * positive / steps:.0f}%)")
    print(f"- steps whose retrieved records all have max Q <= 0: {steps - positive} ({100 * (steps - positive) / steps:.0f}%)")
    print("- retrieved records by source task (count of record retrievals):")
    for task, n in by_task.most_common():
        print(f"  - {n:4d}  {task}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
