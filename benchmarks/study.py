"""The study's summary across its published runs: the robustness spread and the test-goal learning curve.

    python -m rlem_gym.benchmarks.study docs/study            # writes docs/study/summary.md and its plots

Reads every ``<root>/<run>/results.json`` (with its ``config.json``) that ``publish`` wrote for a
finished run; a run not finished yet is listed as missing, never guessed. Two views that no single
run's table gives:

- **Robustness (the paper's RQ2).** Per env, the same agents over the runs that differ only in the
  initial pool or the training set (:data:`ROBUSTNESS`): each run's score [95% CI], then the mean,
  min and max over the runs, and each run's paired difference of the untrained from the trained
  Rememberer. Plot: ``robustness_<env>.png``.
- **Learning curve on test goals.** The test score of the memory after each training epoch:
  epoch 0 is the main run's untrained row (the initial pool alone), the middle epochs come from the
  snapshot run (``rememberer[init=.../memory_epochNN]@untrained`` rows), and the last is the main
  run's trained row. Plot: ``test_curve_<env>.png``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from rlem_gym.atomic import atomic_write_text
from rlem_gym.benchmarks.rundir import read_json
from rlem_gym.benchmarks.stats import Estimate

#: env -> the runs of the robustness study: the main run first, then one other setting each
ROBUSTNESS: dict[str, tuple[str, ...]] = {
    "webshop": ("webshop-main", "webshop-E1", "webshop-E2", "webshop-S1"),
    "wikihow": ("wikihow-main", "wikihow-S1"),
}
#: the rows compared across the robustness runs (each run has the first two at least)
ROBUST_AGENTS = ("rememberer", "rememberer@untrained", "static")
#: env -> (main run, snapshot run) of the test-goal learning curve
TEST_CURVES: dict[str, tuple[str, str]] = {"webshop": ("webshop-main", "webshop-snapshots")}
TRAINED, UNTRAINED = "rememberer", "rememberer@untrained"


def load_runs(root: str | Path) -> dict[str, dict[str, Any]]:
    """``{run name: {"results": results.json, "config": config.json's "config"}}`` of the finished runs under ``root``."""
    runs = {}
    for path in sorted(Path(root).glob("*/results.json")):
        cfg_path = path.parent / "config.json"
        config = read_json(cfg_path).get("config", {}) if cfg_path.is_file() else {}
        runs[path.parent.name] = {"results": read_json(path), "config": config}
    return runs


def _row(run: dict[str, Any], agent: str) -> dict[str, Any] | None:
    return next((r for r in run["results"]["rows"] if r["agent"] == agent), None)


def _paired(run: dict[str, Any], agent: str) -> dict[str, Any] | None:
    paired = run["results"].get("paired") or {}
    if paired.get("reference") != TRAINED:
        return None
    return next((r["score"] for r in paired.get("rows", []) if r["agent"] == agent), None)


def setting(run: dict[str, Any]) -> str:
    """What distinguishes a robustness run: its initial pool and its training split."""
    cfg = run["config"]
    return f"init {cfg.get('init_memory') or 'empty'}, train {cfg.get('train_split')}"


def robustness(runs: dict[str, dict[str, Any]], env: str) -> dict[str, Any]:
    """Per agent of :data:`ROBUST_AGENTS`: each present run's score estimate and the mean / min / max of
    their means; per run, the paired difference untrained - trained. ``missing``: runs not finished."""
    names = [n for n in ROBUSTNESS[env] if n in runs]
    agents: dict[str, Any] = {}
    for agent in ROBUST_AGENTS:
        rows = {n: _row(runs[n], agent) for n in names}
        per = {n: row["score"] for n, row in rows.items() if row}
        means = [e["mean"] for e in per.values()]
        agents[agent] = {
            "per_run": per,
            "mean": statistics.fmean(means) if means else None,
            "min": min(means) if means else None,
            "max": max(means) if means else None,
        }
    return {
        "env": env,
        "runs": names,
        "settings": {n: setting(runs[n]) for n in names},
        "missing": [n for n in ROBUSTNESS[env] if n not in runs],
        "agents": agents,
        "untrained_minus_trained": {n: _paired(runs[n], UNTRAINED) for n in names},
    }


def test_curve(runs: dict[str, dict[str, Any]], env: str) -> dict[str, Any]:
    """The test score of the memory after each epoch (see the module doc); ``missing`` names what is not there."""
    main_name, snap_name = TEST_CURVES[env]
    main, snaps = runs.get(main_name), runs.get(snap_name)
    points: list[dict[str, Any]] = []
    missing = [n for n, r in ((main_name, main), (snap_name, snaps)) if r is None]

    def add(epoch: int, row: dict[str, Any] | None) -> None:
        if row is not None:
            points.append({"epoch": epoch, "episodes": row["episodes"], "score": row["score"],
                           "success_rate": row["success_rate"]})

    epochs = int(main["config"].get("epochs", 0)) if main else 0
    if main:
        add(0, _row(main, UNTRAINED))
    if snaps:
        for row in snaps["results"]["rows"]:
            tag = row["agent"].partition("memory_epoch")[2][:2]
            if tag.isdigit() and (not epochs or int(tag) < epochs):
                add(int(tag), row)
    if main and epochs:
        add(epochs, _row(main, TRAINED))
    points.sort(key=lambda p: p["epoch"])
    return {"env": env, "points": points, "missing": missing}


def _fmt(est: dict[str, Any] | None, signed: bool = False) -> str:
    return Estimate.from_dict(est).fmt(1, signed=signed) if est else "-"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def summary_markdown(rob: list[dict[str, Any]], curves: list[dict[str, Any]]) -> str:
    """summary.md: one robustness table per env and one test-curve table per env."""
    out = ["# Study summary across runs", "",
           "Written by `python -m rlem_gym.benchmarks.study docs/study` from the finished runs' results.json;",
           "every cell: score, mean [95% bootstrap CI over goals]. A run not finished is listed as missing.", ""]
    for r in rob:
        out += [f"## Robustness, {r['env']}", ""]
        if not r["runs"]:
            out += [f"No run finished yet (missing: {', '.join(r['missing'])}).", ""]
            continue
        out += ["| agent | " + " | ".join(f"`{n}` ({r['settings'][n]})" for n in r["runs"]) + " | mean | min | max |",
                "|---|" + "---|" * (len(r["runs"]) + 3)]
        for agent, a in r["agents"].items():
            cells = [_fmt(a["per_run"].get(n)) for n in r["runs"]]
            out.append(f"| {agent} | " + " | ".join(cells) + f" | {_num(a['mean'])} | {_num(a['min'])} | {_num(a['max'])} |")
        diffs = [_fmt(r["untrained_minus_trained"][n], signed=True) for n in r["runs"]]
        out += ["| untrained - trained (paired) | " + " | ".join(diffs) + " | | | |", ""]
        if r["missing"]:
            out += [f"Missing (not finished): {', '.join(r['missing'])}.", ""]
    for c in curves:
        out += [f"## Learning curve on test goals, {c['env']}", "",
                "| memory after epoch | N | score | SR % |", "|---|---|---|---|"]
        out += [f"| {p['epoch']} | {p['episodes']} | {_fmt(p['score'])} | {_fmt(p['success_rate'])} |"
                for p in c["points"]]
        if c["missing"]:
            out += ["", f"Missing (not finished): {', '.join(c['missing'])}."]
        out.append("")
    return "\n".join(out)


def write_summary(root: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write summary.md and the plots of every view that has data; return the paths written. A view
    with no data (e.g. its main run was renamed or not finished) loses a plot left by an earlier call."""
    from rlem_gym.benchmarks.plots import plot_learning_curve, plot_sweep

    out = Path(out or root)
    runs = load_runs(root)
    rob = [robustness(runs, env) for env in ROBUSTNESS]
    curves = [test_curve(runs, env) for env in TEST_CURVES]
    paths = [out / "summary.md"]
    atomic_write_text(paths[0], summary_markdown(rob, curves))
    for r in rob:
        if not r["runs"]:
            (out / f"robustness_{r['env']}.png").unlink(missing_ok=True)
        else:
            rows = [{"model": n, "agent": agent, "score": est}
                    for agent, a in r["agents"].items() for n, est in a["per_run"].items()]
            paths.append(plot_sweep({"models": r["runs"], "rows": rows}, out / f"robustness_{r['env']}.png",
                                    title=f"Robustness, {r['env']}: test score per agent and run (95% bootstrap CI)"))
    for c in curves:
        if not c["points"]:
            (out / f"test_curve_{c['env']}.png").unlink(missing_ok=True)
        else:
            path = plot_learning_curve({"learning_curve": c["points"]}, out / f"test_curve_{c['env']}.png", phase="test",
                                       title=f"{c['env']}: test score of the memory after each training epoch")
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlem_gym.benchmarks.study", description=__doc__.splitlines()[0])
    ap.add_argument("root", help="the folder of published runs (docs/study)")
    ap.add_argument("--out", help="where to write summary.md and the plots (default: root)")
    args = ap.parse_args(argv)
    if not Path(args.root).is_dir():
        print(f"study: {args.root} is not a folder", file=sys.stderr)
        return 2
    for path in write_summary(args.root, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
