"""The study's summary across its published runs: the robustness spread and the test-goal learning curve.

    python -m rlem_gym.benchmarks.study.summary docs/study            # writes docs/study/summary.md and its plots
    python -m rlem_gym.benchmarks.study.summary docs/study --forest   # writes docs/study/forest.png and cluster_ci.md

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

With ``--forest``, instead: **paired differences with both intervals** (:func:`forest`). Every
published run with test episodes and a trained Rememberer row (or an explicit ``reference``) is
re-aggregated from its records (``records.jsonl.gz``, else ``records/``) exactly as its results
table is: every row minus the reference, goal by goal, with the 95% per-goal bootstrap CI and the
95% cluster bootstrap CI over the goals' target products (WebShop) or articles (WikiHow), the
clusters read from the env data (:mod:`rlem_gym.benchmarks.clusters`). Written: ``forest.png``
and ``cluster_ci.md`` (the plotted numbers).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from rlem_gym.atomic import atomic_write_text
from rlem_gym.benchmarks.rundir import RunDir, read_json
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.benchmarks.report import episode_value
from rlem_gym.benchmarks.stats import Estimate, paired_bootstrap_ci

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
#: rows a robustness run does not repeat: run -> {agent: the run whose row stands in for it}. The
#: untrained Rememberer of a run that only changes the training set has the same pool, goals and
#: settings as the main run's and, decoding greedily, would take the same actions; the summary shows
#: the main run's row (marked) and pairs it goal by goal with the run's own trained row.
REFERENCED_ROWS: dict[str, dict[str, str]] = {
    "webshop-S1": {UNTRAINED: "webshop-main"},
    "wikihow-S1": {UNTRAINED: "wikihow-main"},
}


def load_runs(root: str | Path) -> dict[str, dict[str, Any]]:
    """``{run name: {"results": results.json, "config": config.json's "config"}}`` of the finished runs under ``root``."""
    runs = {}
    for path in sorted(Path(root).glob("*/results.json")):
        cfg_path = path.parent / "config.json"
        config = read_json(cfg_path).get("config", {}) if cfg_path.is_file() else {}
        runs[path.parent.name] = {"results": read_json(path), "config": config, "folder": path.parent}
    return runs


def _test_scores(run: dict[str, Any], agent: str) -> dict[tuple[int, int], float]:
    """(seed, task index) -> score (100 x normalised return) of ``agent``'s test episodes in a published run."""
    rows = _published_rows(Path(run["folder"]), "records.jsonl.gz", [])
    return {
        (int(r["seed"]), int(r["task_index"])): episode_value(r, "score")
        for r in rows
        if r.get("phase") == "test" and r.get("agent") == agent and r.get("status", "ok") == "ok"
    }


#: the settings an untrained row's episodes do not depend on (the others are those that decide results)
_TRAINING_SETTINGS = ("agents", "train_split", "epochs")


def _same_test_episodes(run: dict[str, Any], source: dict[str, Any]) -> bool:
    """Whether an untrained row of ``source`` stands for ``run``'s: every setting that decides results,
    but the training ones, agrees (each config read as stored, old versions with their defaults)."""
    a, b = (
        BenchConfig.from_stored(read_json(Path(r["folder"]) / "config.json")).result_fields() for r in (run, source)
    )
    return all(a[k] == b[k] for k in a if k not in _TRAINING_SETTINGS)


def _cross_run_paired(run: dict[str, Any], agent: str, source: dict[str, Any]) -> dict[str, Any] | None:
    """``agent``'s row of ``source`` minus ``run``'s trained row, goal by goal (paired bootstrap), or None."""
    mine, theirs = _test_scores(run, TRAINED), _test_scores(source, agent)
    keys = sorted(set(mine) & set(theirs))
    if not keys:
        return None
    est = paired_bootstrap_ci([theirs[k] for k in keys], [mine[k] for k in keys])
    return est.as_dict()


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
    referenced: dict[str, dict[str, str]] = {}
    for agent in ROBUST_AGENTS:
        rows = {}
        for n in names:
            rows[n] = _row(runs[n], agent)
            source = REFERENCED_ROWS.get(n, {}).get(agent)
            if rows[n] is None and source in runs and _same_test_episodes(runs[n], runs[source]):
                rows[n] = _row(runs[source], agent)
                referenced.setdefault(n, {})[agent] = source
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
        "referenced": referenced,
        "untrained_minus_trained": {
            n: _paired(runs[n], UNTRAINED)
            if UNTRAINED not in referenced.get(n, {})
            else _cross_run_paired(runs[n], UNTRAINED, runs[referenced[n][UNTRAINED]])
            for n in names
        },
    }


def test_curve(runs: dict[str, dict[str, Any]], env: str) -> dict[str, Any]:
    """The test score of the memory after each epoch (see the module doc); ``missing`` names what is not there."""
    main_name, snap_name = TEST_CURVES[env]
    main, snaps = runs.get(main_name), runs.get(snap_name)
    points: list[dict[str, Any]] = []
    missing = [n for n, r in ((main_name, main), (snap_name, snaps)) if r is None]

    def add(epoch: int, row: dict[str, Any] | None) -> None:
        if row is not None:
            points.append(
                {
                    "epoch": epoch,
                    "episodes": row["episodes"],
                    "score": row["score"],
                    "success_rate": row["success_rate"],
                }
            )

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
    out = [
        "# Study summary across runs",
        "",
        "Written by `python -m rlem_gym.benchmarks.study.summary docs/study` from the finished runs' results.json;",
        "every cell: score, mean [95% bootstrap CI over goals]. A run not finished is listed as missing.",
        "",
    ]
    for r in rob:
        out += [f"## Robustness, {r['env']}", ""]
        if not r["runs"]:
            out += [f"No run finished yet (missing: {', '.join(r['missing'])}).", ""]
            continue
        out += [
            "| agent | " + " | ".join(f"`{n}` ({r['settings'][n]})" for n in r["runs"]) + " | mean | min | max |",
            "|---|" + "---|" * (len(r["runs"]) + 3),
        ]
        for agent, a in r["agents"].items():
            cells = [
                _fmt(a["per_run"].get(n)) + (" (ref.)" if agent in r["referenced"].get(n, {}) else "")
                for n in r["runs"]
            ]
            out.append(
                f"| {agent} | " + " | ".join(cells) + f" | {_num(a['mean'])} | {_num(a['min'])} | {_num(a['max'])} |"
            )
        diffs = [_fmt(r["untrained_minus_trained"][n], signed=True) for n in r["runs"]]
        out += ["| untrained - trained (paired) | " + " | ".join(diffs) + " | | | |", ""]
        for n, rows in r["referenced"].items():
            for agent, source in rows.items():
                out += [
                    f"(ref.) `{n}` does not re-run `{agent}`: with the same pool, goals and settings (greedy decoding) "
                    f"its episodes would repeat `{source}`'s, so that row is shown, and paired goal by goal with "
                    f"`{n}`'s trained row.",
                    "",
                ]
        if r["missing"]:
            out += [f"Missing (not finished): {', '.join(r['missing'])}.", ""]
    for c in curves:
        out += [
            f"## Learning curve on test goals, {c['env']}",
            "",
            "| memory after epoch | N | score | SR % |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {p['epoch']} | {p['episodes']} | {_fmt(p['score'])} | {_fmt(p['success_rate'])} |" for p in c["points"]
        ]
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
            rows = [
                {"model": n, "agent": agent, "score": est}
                for agent, a in r["agents"].items()
                for n, est in a["per_run"].items()
            ]
            paths.append(
                plot_sweep(
                    {"models": r["runs"], "rows": rows},
                    out / f"robustness_{r['env']}.png",
                    title=f"Robustness, {r['env']}: test score per agent and run (95% bootstrap CI)",
                )
            )
    for c in curves:
        if not c["points"]:
            (out / f"test_curve_{c['env']}.png").unlink(missing_ok=True)
        else:
            path = plot_learning_curve(
                {"learning_curve": c["points"]},
                out / f"test_curve_{c['env']}.png",
                phase="test",
                title=f"{c['env']}: test score of the memory after each training epoch",
            )
            paths.append(path)
    return paths


def _published_rows(folder: Path, name: str, fallback: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``folder/name`` (a gzipped JSONL that publish wrote), else ``fallback``."""
    path = folder / name
    if not path.is_file():
        return fallback
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines() if line]


def _run_order(name: str) -> tuple[bool, str]:
    """A run's place in its env's panel: ``<env>-main`` first, then by name."""
    return (not name.endswith("-main"), name)


def forest(root: str | Path) -> dict[str, Any]:
    """The paired score differences of every published run under ``root`` that has test episodes
    and a reference row that trained (see the module doc): ``entries`` (one per run and agent, as
    :func:`~rlem_gym.benchmarks.plots.plot_forest` takes them, sorted by env, then the main run
    first) and ``skipped`` (run name -> why it is left out)."""
    from rlem_gym.agents.variants import parse_agent_list, reference_variant
    from rlem_gym.benchmarks.runner import run_results, stored_run

    entries: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for cfg_path in sorted(Path(root).glob("*/config.json")):
        folder = cfg_path.parent
        cfg, train, test = stored_run(folder)
        if not cfg.reference and reference_variant(parse_agent_list(list(cfg.agents))) is None:
            skipped[folder.name] = "no trained Rememberer row to compare with"
            continue
        run = RunDir(folder)
        records = _published_rows(folder, "records.jsonl.gz", [])
        records = records or run.records()
        if not any(r["phase"] == "test" for r in records):
            skipped[folder.name] = "no test episodes"
            continue
        errors = _published_rows(folder, "errors.jsonl.gz", [])
        results = run_results(cfg, records, errors or run.errors(), train, test)
        clusters = results.get("clusters")
        if clusters is None:
            skipped[folder.name] = f"no clusters ({results.get('clusters_error')})"
            continue
        for row in results["paired"]["rows"]:
            entries.append(
                {
                    "env": cfg.env,
                    "run": folder.name,
                    "split": test.spec,
                    "agent": row["agent"],
                    "reference": results["paired"]["reference"],
                    "unit": clusters["unit"],
                    "clusters": clusters["count"],
                    "goals": clusters["tasks"],
                    "diff": row["score"],
                    "diff_cluster": row["score_cluster"],
                }
            )
    entries.sort(key=lambda e: (e["env"], _run_order(e["run"])))  # stable: the agents keep their order
    return {"entries": entries, "skipped": skipped}


def forest_markdown(data: dict[str, Any]) -> str:
    """cluster_ci.md: the numbers of forest.png, one line per run and agent."""
    out = [
        "# Paired differences with per-goal and cluster bootstrap CIs",
        "",
        "Written by `python -m rlem_gym.benchmarks.study.summary docs/study --forest` from the published runs'",
        "records, with the numbers drawn in [forest.png](forest.png). Δ score = mean over the test goals of",
        "(agent - the trained Rememberer), points of 100 x mean reward. Per-goal CI: 95% paired bootstrap over",
        "seeds and goals (the results tables' CI). Cluster CI: 95% paired bootstrap that resamples whole",
        "clusters of goals, the same clusters for both rows: WebShop goals by target product, WikiHow tasks by",
        "article, TextWorld games one by one (`rlem_gym.benchmarks.clusters`). Width ratio: cluster CI width /",
        "per-goal CI width.",
        "",
        "| env | run | split | goals / clusters | agent | Δ score | per-goal 95% CI | cluster 95% CI | width ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in data["entries"]:
        d, c = Estimate.from_dict(e["diff"]), Estimate.from_dict(e["diff_cluster"])
        ratio = f"{(c.hi - c.lo) / (d.hi - d.lo):.2f}" if d.hi > d.lo else "-"
        cells = [
            e["env"],
            f"`{e['run']}`",
            f"`{e['split']}`",
            f"{e['goals']} / {e['clusters']} {e['unit']}s",
            e["agent"],
            f"{d.mean:+.1f}",
            d.fmt(1, signed=True, interval_only=True),
            c.fmt(1, signed=True, interval_only=True),
            ratio,
        ]
        out.append("| " + " | ".join(cells) + " |")
    if data["skipped"]:
        out += ["", "Not plotted: " + "; ".join(f"`{n}` ({why})" for n, why in data["skipped"].items()) + "."]
    return "\n".join(out) + "\n"


def write_forest(root: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write forest.png and cluster_ci.md (see :func:`forest`); return the paths written."""
    from rlem_gym.benchmarks.plots import plot_forest

    out = Path(out or root)
    data = forest(root)
    if not data["entries"]:
        raise ValueError(f"no published run under {root} has paired differences from a trained Rememberer")
    out.mkdir(parents=True, exist_ok=True)
    md = out / "cluster_ci.md"
    atomic_write_text(md, forest_markdown(data))
    return [plot_forest(data["entries"], out / "forest.png"), md]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rlem_gym.benchmarks.study.summary", description=__doc__.splitlines()[0]
    )
    ap.add_argument("root", help="the folder of published runs (docs/study)")
    ap.add_argument("--out", help="where to write summary.md and the plots (default: root)")
    ap.add_argument(
        "--forest",
        action="store_true",
        help="write forest.png and cluster_ci.md (paired differences with per-goal and cluster "
        "bootstrap CIs) instead of the summary",
    )
    args = ap.parse_args(argv)
    if not Path(args.root).is_dir():
        print(f"study: {args.root} is not a folder", file=sys.stderr)
        return 2
    try:
        paths = write_forest(args.root, args.out) if args.forest else write_summary(args.root, args.out)
    except ValueError as exc:
        print(f"study: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
