"""An interim table of an unfinished study run: only the test goals that every row has finished.

A stopped run has played its test goals in order, so the rows differ by at most the goal in flight.
This copies the run's config, records, step log and memories to a scratch folder, keeps the test
episodes of the goals every agent of the config finished, and renders there what a finished run
would show: ``results.{md,csv,json}`` and plots (``rerender``), ``failures.md`` and, for each
Rememberer row, ``retrieval_<row>.md`` (``retrieval_diagnosis.py``) and ``goal_stats.txt``
(``goal_stats.py``). They are copied to DEST, with the records they were rendered from
(``records.jsonl.gz``), so the table can be re-rendered where it lies.

    python -m rlem_gym.benchmarks.study.probes.interim runs/study/webshop-main docs/study/webshop-main/interim [FIRST]

With FIRST, only the first FIRST of those goals are kept (to re-render an earlier interim table).

Training records are kept as they are (the learning curve); nothing in the run folder is changed.
"""

import contextlib
import io
import json
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from rlem_gym.benchmarks.study import failures
from rlem_gym.benchmarks.study.publish import write_records
from rlem_gym.benchmarks.rundir import RunDir, iter_jsonl, read_json
from rlem_gym.benchmarks.runner import rerender
from rlem_gym.benchmarks.study.probes import goal_stats, retrieval_diagnosis


OUTPUTS = ("results.md", "results.csv", "results.json", "scores.png", "learning_curve.png")


def finished_goals(run: RunDir, agents: list[str]) -> list[int]:
    """Test task indices that every agent finished (status ok), over all seeds of the run."""
    done: dict[int, set[str]] = defaultdict(set)
    for rec in run.records():
        if rec.get("phase") == "test" and rec.get("status", "ok") == "ok":
            done[int(rec["task_index"])].add(rec["agent"])
    return sorted(g for g, who in done.items() if who >= set(agents))


def printed(probe, *args: str) -> str:
    """What a probe's ``main(*args)`` prints."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        probe.main(*args)
    return text.getvalue()


def main(run_dir: str, dest: str, first: int | None = None) -> None:
    src = RunDir(run_dir)
    config = read_json(src.config_path)["config"]
    agents = list(config["agents"])
    goals = finished_goals(src, agents)[:first]
    if not goals:
        raise SystemExit(f"no test goal of {run_dir} is finished by every agent ({', '.join(agents)})")
    keep = set(goals)
    with tempfile.TemporaryDirectory(prefix="interim-") as tmp:
        root = Path(tmp) / "run"
        shutil.copytree(run_dir, root, ignore=shutil.ignore_patterns("episodes.jsonl", "records"))
        (root / "records").mkdir()
        for path in sorted((Path(run_dir) / "records").glob("*.json")):
            rec = read_json(path)
            if rec.get("phase") != "test" or int(rec["task_index"]) in keep:
                shutil.copy2(path, root / "records" / path.name)
        with open(root / "episodes.jsonl", "w", encoding="utf-8") as out:
            for row in iter_jsonl(src.step_log_path):
                if row.get("phase") != "test" or int(row["goal"]) in keep:
                    out.write(json.dumps(row) + "\n")
        rerender(root)
        out_dir = Path(dest)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:
            if (root / name).exists():
                shutil.copy2(root / name, out_dir / name)
        write_records(RunDir(root), out_dir)  # the records the table was rendered from, beside it
        (out_dir / "failures.md").write_text(failures.markdown(failures.analyse(root)) + "\n")
        (out_dir / "goal_stats.txt").write_text(printed(goal_stats, str(root)))
        for agent in agents:
            if not agent.startswith("rememberer"):
                continue
            name = "retrieval_" + (agent.split("@", 1)[1] if "@" in agent else agent) + ".md"
            (out_dir / name).write_text(printed(retrieval_diagnosis, str(root), agent))
    print(f"interim of {run_dir}: test goals {goals[0]}-{goals[-1]} ({len(goals)} goals) -> {dest}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
