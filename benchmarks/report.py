"""Turns episode completion records into the results table (results.md / .csv / .json).

One row per agent. Every figure is a mean over the test episodes (seeds x goals) with its 95%
bootstrap CI (:func:`rlem_gym.benchmarks.stats.bootstrap_ci`, seeded):

- ``score``: 100 x mean normalised reward. WebShop's reward is already in [0, 1]; a WikiHow
  episode's return is divided by its number of sub-goals. ``return`` keeps the raw mean return.
- ``success_rate``: % of episodes that succeeded (WebShop: reward 1.0; WikiHow: every sub-goal).
- ``steps``, ``prompt_tokens``, ``completion_tokens`` (LLM tokens in / out per episode),
  ``wall_s`` (seconds per episode) and ``fallback_rate`` (% of steps where the parser fell back).
- ``valid_rate``: % of steps whose action the env accepted (no ``last_action_error``).
- ``encouraged_rate`` (Rememberer rows only, "n/a" elsewhere): % of steps where the model's own
  choice (not a fallback) was the Encouraged action of a retrieved exemplar in its prompt.

Paired differences: every agent plays the same goals, so each row is also compared with the
trained Rememberer (``reference``: plain ``rememberer`` when listed, else the first trained
Rememberer variant) goal by goal: the mean per-episode difference in score and SR with a paired
bootstrap 95% CI over goals and seeds (:func:`~rlem_gym.benchmarks.stats.paired_bootstrap_ci`),
much tighter than comparing two separate intervals.

Cluster CIs: goals that share a target product (WebShop) or an article (WikiHow) are not
independent, so score and SR, plain and paired, also get a 95% cluster bootstrap CI that resamples
whole clusters of goals (:func:`~rlem_gym.benchmarks.stats.cluster_bootstrap_ci`; the clusters come
from the env data, :mod:`rlem_gym.benchmarks.clusters`). They are stored beside the per-goal ones
as ``score_cluster`` / ``success_rate_cluster`` and shown in the tables as "cluster CI" columns.

The learning curve (training score and SR per epoch) comes from the training records: of the
reference, and of every other trained Rememberer variant in ``learning_curves``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rlem_gym.atomic import atomic_write_json, atomic_write_text
from rlem_gym.benchmarks.clusters import Clusters
from rlem_gym.benchmarks.rundir import RECORD_TIMING_FIELDS
from rlem_gym.benchmarks.stats import (
    Estimate,
    bootstrap_ci,
    cluster_bootstrap_ci,
    paired_bootstrap_ci,
    paired_cluster_bootstrap_ci,
)

#: (key in results, column header, per-episode value, decimals)
METRICS: tuple[tuple[str, str, str, int], ...] = (
    ("score", "Score", "score", 1),
    ("success_rate", "SR %", "success", 1),
    ("return", "Return", "return", 2),
    ("steps", "Steps", "steps", 1),
    ("prompt_tokens", "Tokens in", "prompt_tokens", 0),
    ("completion_tokens", "Tokens out", "completion_tokens", 0),
    ("wall_s", "Wall s", "wall_s", 1),
    ("fallback_rate", "Fallback %", "fallback_rate", 1),
    ("valid_rate", "Valid %", "valid_rate", 1),
    ("encouraged_rate", "Enc. copied %", "encouraged_rate", 1),
)
#: the per-episode values compared with the reference row: (key, column header, value, decimals)
PAIRED_METRICS: tuple[tuple[str, str, str, int], ...] = (
    ("score", "Δ Score", "score", 1),
    ("success_rate", "Δ SR %", "success", 1),
)
#: the metrics that also get a cluster bootstrap CI, stored as ``<key>_cluster`` (rows and paired rows)
CLUSTER_METRICS = ("score", "success_rate")
#: row metrics that depend on timing (the means of the records' wall-time fields), so they differ
#: between otherwise identical runs
TIMING_METRICS = RECORD_TIMING_FIELDS


def episode_value(record: dict[str, Any], field: str) -> float:
    """One episode's value of a row metric (``score`` = 100 x normalised return), as the tables average it."""
    if field == "score":
        return 100.0 * float(record["normalized_return"])
    if field == "success":
        return 100.0 * float(bool(record["success"]))
    if field == "fallback_rate":
        steps = record["steps"]
        return 100.0 * record["fallbacks"] / steps if steps else 0.0
    if field == "valid_rate":
        steps = record["steps"]
        return 100.0 * (1.0 - record.get("invalid_actions", 0) / steps) if steps else float("nan")
    if field == "encouraged_rate":  # only memory agents report it; NaN (n/a) for the others
        steps = record["steps"]
        if "encouraged_copies" not in record or not steps:
            return float("nan")
        return 100.0 * record["encouraged_copies"] / steps
    return float(record[field])


def _table(records: Sequence[dict[str, Any]], field: str, seeds: Sequence[int], tasks: Sequence[int]) -> np.ndarray:
    """seeds x tasks matrix of one per-episode value (NaN where no record)."""
    table = np.full((len(seeds), len(tasks)), np.nan)
    s_pos = {s: i for i, s in enumerate(seeds)}
    t_pos = {t: j for j, t in enumerate(tasks)}
    for rec in records:
        i, j = s_pos.get(rec["seed"]), t_pos.get(rec["task_index"])
        if i is not None and j is not None:
            table[i, j] = episode_value(rec, field)
    return table


def aggregate(
    records: Sequence[dict[str, Any]],
    *,
    agents: Sequence[str],
    seeds: Sequence[int],
    test_tasks: Sequence[int],
    train_tasks: Sequence[int] = (),
    epochs: int = 0,
    expected_test: int | None = None,
    errors: Sequence[dict[str, Any]] = (),
    n_boot: int = 2000,
    reference: str | None = None,
    clusters: Clusters | None = None,
) -> dict[str, Any]:
    """The results dict: ``rows`` (one per agent), ``paired``, ``learning_curve(s)``, run ``progress``
    and, with ``clusters``, ``clusters`` (its :meth:`~rlem_gym.benchmarks.clusters.Clusters.as_dict`).

    ``errors``: the error records of failed test episodes. A failed training episode is committed
    as a record with ``status`` "error"; it is left out of the learning curve and counted, with
    ``errors``, in ``progress["failed"]``. ``reference``: the row the others are compared with,
    goal by goal (None: no paired differences). ``clusters``: the cluster of every test task, in
    ``test_tasks`` order; score and SR then also get cluster bootstrap CIs (``<key>_cluster``).
    """
    cluster_ids = _cluster_ids(clusters, test_tasks)
    rows: list[dict[str, Any]] = []
    test_records = [r for r in records if r["phase"] == "test"]
    for agent in agents:
        mine = [r for r in test_records if r["agent"] == agent]
        row: dict[str, Any] = {"agent": agent, "episodes": len(mine)}
        row["failed"] = sum(1 for e in errors if e.get("phase") == "test" and e.get("agent") == agent)
        for key, _, field, _ in METRICS:
            est = bootstrap_ci(_table(mine, field, seeds, test_tasks), n_boot=n_boot, seed=0)
            row[key] = _stored(est)
            if cluster_ids is not None and key in CLUSTER_METRICS:
                table = _table(mine, field, seeds, test_tasks)
                row[f"{key}_cluster"] = _stored(cluster_bootstrap_ci(table, cluster_ids, n_boot=n_boot, seed=0))
        rows.append(row)
    paired = _paired(test_records, agents, reference, seeds, test_tasks, n_boot, cluster_ids)
    train_records = [r for r in records if r["phase"] == "train" and r.get("status") != "error"]
    train_failed = sum(1 for r in records if r["phase"] == "train" and r.get("status") == "error")
    curves: dict[str, list[dict[str, Any]]] = {}
    for agent in dict.fromkeys(r["agent"] for r in train_records):
        curves[agent] = []
        for epoch in range(epochs):
            mine = [r for r in train_records if r["agent"] == agent and r["epoch"] == epoch]
            if not mine:
                continue
            point: dict[str, Any] = {"epoch": epoch + 1, "episodes": len(mine)}
            for key, field in (("score", "score"), ("success_rate", "success")):
                point[key] = bootstrap_ci(_table(mine, field, seeds, train_tasks), n_boot=n_boot, seed=0).as_dict()
            curves[agent].append(point)
    main = reference if reference in curves else next(iter(curves), None)
    curve = curves.get(main, []) if main is not None else []
    done = len(test_records)
    out: dict[str, Any] = {
        "rows": rows,
        "paired": paired,
        "learning_curve": curve,
        "learning_curve_agent": main,
        "learning_curves": curves,
        "progress": {
            "test_episodes_done": done,
            "test_episodes_expected": expected_test if expected_test is not None else done,
            "train_episodes_done": len(train_records),
            "failed": len(errors) + train_failed,
        },
    }
    if clusters is not None:
        out["clusters"] = clusters.as_dict()
    return out


def _cluster_ids(clusters: Clusters | None, tasks: Sequence[int]) -> list[str] | None:
    if clusters is None:
        return None
    if len(clusters.ids) != len(tasks):
        raise ValueError(f"clusters name {len(clusters.ids)} tasks but the test split has {len(tasks)}")
    return list(clusters.ids)


def _paired(
    test_records: Sequence[dict[str, Any]],
    agents: Sequence[str],
    reference: str | None,
    seeds: Sequence[int],
    tasks: Sequence[int],
    n_boot: int,
    cluster_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Each agent minus ``reference``, per goal and seed, with paired bootstrap CIs (see the module
    docstring); with ``cluster_ids``, also paired cluster bootstrap CIs of score and SR."""
    if reference is None or reference not in agents:
        return {"reference": None, "rows": []}
    by_agent = {a: [r for r in test_records if r["agent"] == a] for a in agents}
    rows = []
    for agent in agents:
        if agent == reference:
            continue
        row: dict[str, Any] = {"agent": agent}
        for key, _, field, _ in PAIRED_METRICS:
            mine = _table(by_agent[agent], field, seeds, tasks)
            ref = _table(by_agent[reference], field, seeds, tasks)
            row[key] = _stored(paired_bootstrap_ci(mine, ref, n_boot=n_boot, seed=0))
            if cluster_ids is not None and key in CLUSTER_METRICS:
                est = paired_cluster_bootstrap_ci(mine, ref, cluster_ids, n_boot=n_boot, seed=0)
                row[f"{key}_cluster"] = _stored(est)
        rows.append(row)
    return {"reference": reference, "rows": rows}


def _stored(est: Estimate) -> dict[str, Any]:
    """An estimate as results.json keeps it: no data (e.g. a metric only memory agents report) as None, not NaN."""
    d = est.as_dict()
    if est.n == 0:
        d.update(mean=None, lo=None, hi=None)
    return d


def estimate_of(d: dict[str, Any]) -> Estimate:
    """An :class:`Estimate` from its results-dict form (a table cell)."""
    return Estimate.from_dict(d)


def markdown_table(results: dict[str, Any], *, compact: bool = False) -> str:
    """The side-by-side table as Markdown; ``compact`` keeps score, SR, steps and fallbacks only."""
    metrics = [m for m in METRICS if not compact or m[0] in ("score", "success_rate", "steps", "fallback_rate")]
    clustered = _clustered(results)
    header = ["Agent", "N"]
    for key, head, _, _ in metrics:
        header += [head, f"{head} cluster CI"] if clustered and key in CLUSTER_METRICS else [head]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in results["rows"]:
        cells = [row["agent"], str(row["episodes"]) + (f" ({row['failed']} failed)" if row.get("failed") else "")]
        for key, _, _, digits in metrics:
            cells.append(estimate_of(row[key]).fmt(digits))
            if clustered and key in CLUSTER_METRICS:
                cells.append(_cluster_cell(row, key, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _clustered(results: dict[str, Any]) -> bool:
    """Whether ``results`` carries cluster bootstrap CIs (results written before them do not)."""
    return bool(results.get("clusters"))


def _cluster_cell(row: dict[str, Any], key: str, digits: int, signed: bool = False) -> str:
    est = row.get(f"{key}_cluster")
    return estimate_of(est).fmt(digits, signed=signed, interval_only=True) if est else "-"


def paired_table(results: dict[str, Any]) -> str:
    """Each agent's paired difference from the reference row as Markdown ("" when there is none)."""
    paired = results.get("paired") or {}
    if not paired.get("rows"):
        return ""
    clustered = _clustered(results)
    header = ["Agent", "N pairs"]
    for key, head, _, _ in PAIRED_METRICS:
        header += [head, f"{head} cluster CI"] if clustered and key in CLUSTER_METRICS else [head]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in paired["rows"]:
        n = row[PAIRED_METRICS[0][0]]["n"]
        cells = [row["agent"], str(n)]
        for key, _, _, digits in PAIRED_METRICS:
            cells.append(estimate_of(row[key]).fmt(digits, signed=True))
            if clustered and key in CLUSTER_METRICS:
                cells.append(_cluster_cell(row, key, digits, signed=True))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_table(results: dict[str, Any], curve: Sequence[dict[str, Any]] | None = None) -> str:
    """A training learning curve as Markdown (default: the reference's; empty string when there is none)."""
    curve = results.get("learning_curve") or [] if curve is None else curve
    if not curve:
        return ""
    lines = ["| Epoch | Episodes | Train score | Train SR % |", "|---|---|---|---|"]
    for p in curve:
        lines.append(
            f"| {p['epoch']} | {p['episodes']} | {estimate_of(p['score']).fmt(1)} | {estimate_of(p['success_rate']).fmt(1)} |"
        )
    return "\n".join(lines)


def results_csv(results: dict[str, Any]) -> str:
    """One row per agent; each metric as mean, ci_lo, ci_hi columns; with clusters, the cluster
    bootstrap CIs last (``<key>_cluster_ci_lo``, ``<key>_cluster_ci_hi``, then ``d_<key>_...``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    head = ["agent", "episodes", "failed"] + metric_head()
    paired_keys = [key for key, *_ in PAIRED_METRICS]
    for key in paired_keys:
        head += [f"d_{key}", f"d_{key}_ci_lo", f"d_{key}_ci_hi"]
    clustered = [(prefix, key) for prefix in ("", "d_") for key in CLUSTER_METRICS] if _clustered(results) else []
    for prefix, key in clustered:
        head += [f"{prefix}{key}_cluster_ci_lo", f"{prefix}{key}_cluster_ci_hi"]
    writer.writerow(head)
    paired = {r["agent"]: r for r in (results.get("paired") or {}).get("rows", [])}
    for row in results["rows"]:
        line: list[Any] = [row["agent"], row["episodes"], row.get("failed", 0)]
        line += metric_cells(row)
        for key in paired_keys:
            est = paired.get(row["agent"], {}).get(key)
            line += [_num(est["mean"]), _num(est["lo"]), _num(est["hi"])] if est else ["", "", ""]
        for prefix, key in clustered:
            est = (paired.get(row["agent"], {}) if prefix else row).get(f"{key}_cluster")
            line += [_num(est["lo"]), _num(est["hi"])] if est else ["", ""]
        writer.writerow(line)
    return buf.getvalue()


def metric_head() -> list[str]:
    """CSV header cells of every metric: ``key, key_ci_lo, key_ci_hi`` each."""
    return [h for key, *_ in METRICS for h in (key, f"{key}_ci_lo", f"{key}_ci_hi")]


def metric_cells(row: dict[str, Any]) -> list[str]:
    """CSV cells of every metric of a results row: mean, CI low, CI high ("" when missing)."""
    cells: list[str] = []
    for key, *_ in METRICS:
        est = row.get(key) or {}
        cells += [_num(est.get(k, float("nan"))) for k in ("mean", "lo", "hi")]
    return cells


def _num(x: float) -> str:
    return "" if x is None or not np.isfinite(x) else f"{x:.6g}"


def results_markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    """results.md: a header naming the run, the table, the learning curve and notes."""
    prog = results["progress"]
    parts = [
        f"# rlem-gym results: {meta.get('env', '?')}",
        "",
        f"- model: `{meta.get('model', '?')}`; seeds: {meta.get('seeds')}; "
        f"train: `{meta.get('train_split')}` x {meta.get('epochs')} epochs; test: `{meta.get('test_split')}` "
        f"({meta.get('n_test_tasks')} tasks)",
        f"- test episodes finished: {prog['test_episodes_done']}/{prog['test_episodes_expected']}; "
        f"failed: {prog['failed']}",
        "- each cell: mean [95% bootstrap CI over seeds and goals]. Score = 100 x mean normalised reward;"
        " tokens are LLM tokens per episode; wall s per episode.",
        *cluster_note(results),
        "",
        markdown_table(results),
    ]
    paired = paired_table(results)
    if paired:
        ref = results["paired"]["reference"]
        parts += [
            "",
            f"## Paired differences from `{ref}`",
            "",
            f"Each cell: mean of (agent - `{ref}`) over the same goals and seeds [paired bootstrap 95% CI]"
            + (
                "; the cluster CI columns resample whole clusters, the same ones for both rows."
                if _clustered(results)
                else "."
            ),
            "",
            paired,
        ]
    curves = results.get("learning_curves") or {}
    main = results.get("learning_curve_agent")
    for agent in sorted(curves, key=lambda a: a != main):  # the reference's curve first
        table = curve_table(results, curves[agent])
        if table:
            name = "Rememberer" if agent == "rememberer" else f"`{agent}`"
            parts += ["", f"## {name} training (learning curve)", "", table]
    if not curves:  # results written before learning_curves existed
        curve = curve_table(results)
        if curve:
            parts += ["", "## Rememberer training (learning curve)", "", curve]
    return "\n".join(parts) + "\n"


def cluster_note(results: dict[str, Any]) -> list[str]:
    """The header line that says what the cluster CI columns are (none for results without them)."""
    c = results.get("clusters")
    if not c:
        error = results.get("clusters_error")
        return [f"- cluster CIs: not computed ({error})."] if error else []
    units = f"{c['unit']}s"
    line = (
        f"- cluster CI (score, SR): 95% cluster bootstrap CI over seeds and {units}: the {c['tasks']} test goals "
        f"fall into {c['count']} {units}, and the goals of one {c['unit']} are resampled together, since they are "
        "not independent draws"
    )
    if c["count"] == c["tasks"]:
        line += f"; here every goal has its own {c['unit']}, so it equals the per-goal CI"
    return [line + "."]


def write_results(run_root: str | Path, results: dict[str, Any], meta: dict[str, Any]) -> list[Path]:
    """Write results.json / .csv / .md atomically into ``run_root``; return their paths."""
    root = Path(run_root)
    paths = [root / "results.json", root / "results.csv", root / "results.md"]
    atomic_write_json(paths[0], {"meta": meta, **results})
    atomic_write_text(paths[1], results_csv(results))
    atomic_write_text(paths[2], results_markdown(results, meta))
    return paths


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` without timing metrics: equal for two runs that made the same decisions."""
    rows = []
    for row in results["rows"]:
        rows.append({k: v for k, v in row.items() if k not in TIMING_METRICS})
    return {"rows": rows, "paired": results.get("paired"), "learning_curve": results.get("learning_curve", [])}
