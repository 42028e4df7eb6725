"""Turns episode completion records into the results table (results.md / .csv / .json).

One row per agent. Every figure is a mean over the test episodes (seeds x goals) with its 95%
bootstrap CI (:func:`rlem_gym.benchmarks.stats.bootstrap_ci`, seeded):

- ``score``: 100 x mean normalised reward. WebShop's reward is already in [0, 1]; a WikiHow
  episode's return is divided by its number of sub-goals. ``return`` keeps the raw mean return.
- ``success_rate``: % of episodes that succeeded (WebShop: reward 1.0; WikiHow: every sub-goal).
- ``steps``, ``prompt_tokens``, ``completion_tokens`` (LLM tokens in / out per episode),
  ``wall_s`` (seconds per episode) and ``fallback_rate`` (% of steps where the parser fell back).

The Rememberer's learning curve (training score and SR per epoch) comes from the training records.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rlem_gym.atomic import atomic_write_json, atomic_write_text
from rlem_gym.benchmarks.stats import Estimate, bootstrap_ci

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
)
#: metrics that depend on timing, so they differ between otherwise identical runs
TIMING_METRICS = ("wall_s",)


def _episode_value(record: dict[str, Any], field: str) -> float:
    if field == "score":
        return 100.0 * float(record["normalized_return"])
    if field == "success":
        return 100.0 * float(bool(record["success"]))
    if field == "fallback_rate":
        steps = record["steps"]
        return 100.0 * record["fallbacks"] / steps if steps else 0.0
    return float(record[field])


def _table(records: Sequence[dict[str, Any]], field: str, seeds: Sequence[int], tasks: Sequence[int]) -> np.ndarray:
    """seeds x tasks matrix of one per-episode value (NaN where no record)."""
    table = np.full((len(seeds), len(tasks)), np.nan)
    s_pos = {s: i for i, s in enumerate(seeds)}
    t_pos = {t: j for j, t in enumerate(tasks)}
    for rec in records:
        i, j = s_pos.get(rec["seed"]), t_pos.get(rec["task_index"])
        if i is not None and j is not None:
            table[i, j] = _episode_value(rec, field)
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
) -> dict[str, Any]:
    """The results dict: ``rows`` (one per agent), ``learning_curve`` and run ``progress``.

    ``errors``: the error records of failed test episodes. A failed training episode is committed
    as a record with ``status`` "error"; it is left out of the learning curve and counted, with
    ``errors``, in ``progress["failed"]``.
    """
    rows: list[dict[str, Any]] = []
    test_records = [r for r in records if r["phase"] == "test"]
    for agent in agents:
        mine = [r for r in test_records if r["agent"] == agent]
        row: dict[str, Any] = {"agent": agent, "episodes": len(mine)}
        row["failed"] = sum(1 for e in errors if e.get("phase") == "test" and e.get("agent") == agent)
        for key, _, field, _ in METRICS:
            est = bootstrap_ci(_table(mine, field, seeds, test_tasks), n_boot=n_boot, seed=0)
            row[key] = est.as_dict()
        rows.append(row)
    curve: list[dict[str, Any]] = []
    train_records = [r for r in records if r["phase"] == "train" and r.get("status") != "error"]
    train_failed = sum(1 for r in records if r["phase"] == "train" and r.get("status") == "error")
    for epoch in range(epochs):
        mine = [r for r in train_records if r["epoch"] == epoch]
        if not mine:
            continue
        point: dict[str, Any] = {"epoch": epoch + 1, "episodes": len(mine)}
        for key, field in (("score", "score"), ("success_rate", "success")):
            point[key] = bootstrap_ci(_table(mine, field, seeds, train_tasks), n_boot=n_boot, seed=0).as_dict()
        curve.append(point)
    done = len(test_records)
    return {
        "rows": rows,
        "learning_curve": curve,
        "progress": {
            "test_episodes_done": done,
            "test_episodes_expected": expected_test if expected_test is not None else done,
            "train_episodes_done": len(train_records),
            "failed": len(errors) + train_failed,
        },
    }


def _est(d: dict[str, Any]) -> Estimate:
    return Estimate(d["mean"], d["lo"], d["hi"], d["n"])


def markdown_table(results: dict[str, Any], *, compact: bool = False) -> str:
    """The side-by-side table as Markdown; ``compact`` keeps score, SR, steps and fallbacks only."""
    metrics = [m for m in METRICS if not compact or m[0] in ("score", "success_rate", "steps", "fallback_rate")]
    header = ["Agent", "N"] + [m[1] for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in results["rows"]:
        cells = [row["agent"], str(row["episodes"]) + (f" ({row['failed']} failed)" if row.get("failed") else "")]
        cells += [_est(row[key]).fmt(digits) for key, _, _, digits in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_table(results: dict[str, Any]) -> str:
    """The Rememberer's training learning curve as Markdown (empty string when there is none)."""
    curve = results.get("learning_curve") or []
    if not curve:
        return ""
    lines = ["| Epoch | Episodes | Train score | Train SR % |", "|---|---|---|---|"]
    for p in curve:
        lines.append(
            f"| {p['epoch']} | {p['episodes']} | {_est(p['score']).fmt(1)} | {_est(p['success_rate']).fmt(1)} |"
        )
    return "\n".join(lines)


def results_csv(results: dict[str, Any]) -> str:
    """One row per agent; each metric as mean, ci_lo, ci_hi columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    head = ["agent", "episodes", "failed"]
    for key, *_ in METRICS:
        head += [key, f"{key}_ci_lo", f"{key}_ci_hi"]
    writer.writerow(head)
    for row in results["rows"]:
        line: list[Any] = [row["agent"], row["episodes"], row.get("failed", 0)]
        for key, *_ in METRICS:
            est = row[key]
            line += [_num(est["mean"]), _num(est["lo"]), _num(est["hi"])]
        writer.writerow(line)
    return buf.getvalue()


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
        "",
        markdown_table(results),
    ]
    curve = curve_table(results)
    if curve:
        parts += ["", "## Rememberer training (learning curve)", "", curve]
    return "\n".join(parts) + "\n"


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
    return {"rows": rows, "learning_curve": results.get("learning_curve", [])}
