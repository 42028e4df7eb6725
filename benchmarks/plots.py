"""The benchmark figures (matplotlib, Agg backend): per-agent bars and the learning curve.

- ``scores.png``: score and success rate per agent, side by side, with 95% bootstrap CIs.
- ``learning_curve.png``: the Rememberer's training score and SR per epoch, with CIs.
- ``forest.png`` (the study's runs, :func:`plot_forest`): paired differences from the trained
  Rememberer with the per-goal and the cluster bootstrap CIs.

Both are drawn from the results dict of :func:`rlem_gym.benchmarks.report.aggregate`, so
``rlem-gym plot RUN_DIR`` can redraw them from the run's records alone.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from rlem_gym.atomic import atomic_write_bytes

#: one colour per agent, stable across figures
AGENT_COLORS = {"rememberer": "#1b9e77", "react": "#d95f02", "static": "#7570b3"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _err(est: dict[str, float]) -> tuple[float, float, float]:
    mean = est["mean"] if est["n"] else np.nan
    if not np.isfinite(mean):
        return 0.0, 0.0, 0.0
    return mean, max(0.0, mean - est["lo"]), max(0.0, est["hi"] - mean)


def _save(plt: Any, fig: Any, path: str | Path, *, top: float = 1.0) -> Path:
    """Lay out ``fig`` (the axes below ``top``, a fraction of its height), write it as PNG to
    ``path`` atomically, close it; return the path."""
    buf = io.BytesIO()
    try:
        fig.tight_layout(rect=(0.0, 0.0, 1.0, top))
        fig.savefig(buf, format="png", dpi=120)
    finally:
        plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _agent_ticks(ax: Any, x: Any, agents: list[str]) -> None:
    """Agent names under the bars; slanted when there are many or long ones, so that they never overlap."""
    slant = len(agents) > 4 or max((len(a) for a in agents), default=0) > 12
    ax.set_xticks(x, agents, rotation=30 if slant else 0, ha="right" if slant else "center", fontsize=8)


def plot_scores(results: dict[str, Any], path: str | Path, *, title: str = "") -> Path:
    """Bar chart of score and success rate per agent with 95% CI error bars."""
    plt = _pyplot()
    rows = results["rows"]
    agents = [r["agent"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.5 * len(agents) + 2), 4.2))
    for ax, key, label in (
        (axes[0], "score", "Score (100 x mean reward)"),
        (axes[1], "success_rate", "Success rate (%)"),
    ):
        vals = [_err(r[key]) for r in rows]
        means = [v[0] for v in vals]
        yerr = np.array([[v[1] for v in vals], [v[2] for v in vals]])
        colors = [AGENT_COLORS.get(a, "#666666") for a in agents]
        x = np.arange(len(agents))
        ax.bar(x, means, color=colors, yerr=yerr, capsize=4, edgecolor="black", linewidth=0.5)
        for xi, (m, r) in enumerate(zip(means, rows)):
            ax.text(xi, m + 1.5, f"{m:.1f}\n(n={r[key]['n']})", ha="center", va="bottom", fontsize=8)
        _agent_ticks(ax, x, agents)
        ax.set_ylim(0, 115)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or "Test results (error bars: 95% bootstrap CI over seeds and goals)", fontsize=10)
    return _save(plt, fig, path)


def plot_learning_curve(
    results: dict[str, Any], path: str | Path, *, title: str = "", phase: str = "train"
) -> Path | None:
    """Score and SR of the Rememberer per epoch (``results["learning_curve"]``); None when empty.
    ``phase`` names the episodes in the legend: ``train`` (memory updates on) or ``test``."""
    curve = results.get("learning_curve") or []
    if not curve:
        return None
    plt = _pyplot()
    epochs = [p["epoch"] for p in curve]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for key, label, color in (("score", f"{phase} score", "#1b9e77"), ("success_rate", f"{phase} SR %", "#e7298a")):
        vals = [_err(p[key]) for p in curve]
        means = np.array([v[0] for v in vals])
        lo = means - np.array([v[1] for v in vals])
        hi = means + np.array([v[2] for v in vals])
        ax.plot(epochs, means, marker="o", color=color, label=label)
        ax.fill_between(epochs, lo, hi, color=color, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_xticks(epochs)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "Rememberer learning curve (training, memory updates on)", fontsize=10)
    return _save(plt, fig, path)


def plot_sweep(sweep: dict[str, Any], path: str | Path, *, title: str = "") -> Path:
    """Grouped bars for a model sweep: score per agent (groups) and model (bars), with 95% CIs.
    Any other set of runs fits too (e.g. the study's robustness runs as "models")."""
    plt = _pyplot()
    models = list(sweep["models"])
    agents = list(dict.fromkeys(r["agent"] for r in sweep["rows"]))
    by_key = {(r["model"], r["agent"]): r for r in sweep["rows"]}
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(agents) * max(1, len(models)) ** 0.5 + 2), 3.8))
    cmap = plt.get_cmap("tab10")
    x = np.arange(len(agents))
    for j, model in enumerate(models):
        vals = [_err(by_key[(model, a)]["score"]) if (model, a) in by_key else (0.0, 0.0, 0.0) for a in agents]
        yerr = np.array([[v[1] for v in vals], [v[2] for v in vals]])
        offs = x - 0.4 + width * (j + 0.5)
        ax.bar(
            offs,
            [v[0] for v in vals],
            width,
            yerr=yerr,
            capsize=3,
            color=cmap(j % 10),
            label=model,
            edgecolor="black",
            linewidth=0.5,
        )
    _agent_ticks(ax, x, agents)
    ax.set_ylim(0, 110)
    ax.set_ylabel("Score (100 x mean reward)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "Model sweep: test score per agent and model (95% bootstrap CI)", fontsize=10)
    return _save(plt, fig, path)


def make_plots(results: dict[str, Any], out_dir: str | Path, *, title: str = "") -> list[Path]:
    """Draw every figure into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_scores(results, out / "scores.png", title=title)]
    curve = plot_learning_curve(results, out / "learning_curve.png")
    if curve is not None:
        paths.append(curve)
    return paths


#: env names as figures write them
ENV_NAMES = {"webshop": "WebShop", "wikihow": "WikiHow", "textworld": "TextWorld"}
#: colours of the two intervals of the forest plot
FOREST_COLORS = {"per_goal": "#333333", "cluster": "#d95f02"}


def short_label(label: str) -> str:
    """An agent label with each path setting cut to its last part (``init=.../memory_epoch03``), to fit a plot."""
    return re.sub(r"=([^,\]]*/)([^/,\]]+)", r"=.../\2", label)


def plot_forest(entries: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Forest plot of paired differences: one panel per env, one line per (run, agent), each with
    two 95% intervals: the per-goal bootstrap and the cluster bootstrap.

    ``entries``: dicts with ``env``, ``run``, ``split``, ``agent``, ``reference``, ``unit`` (the cluster,
    e.g. "target product"), ``clusters`` and ``goals`` (their numbers), and ``diff`` /
    ``diff_cluster`` (stored estimates of the mean difference, agent - reference).
    """
    if not entries:
        raise ValueError("plot_forest needs at least one paired difference")
    plt = _pyplot()
    envs = list(dict.fromkeys(e["env"] for e in entries))
    panels = []
    for env in envs:
        mine = [e for e in entries if e["env"] == env]
        runs = list(dict.fromkeys(e["run"] for e in mine))
        panels.append((env, [(run, [e for e in mine if e["run"] == run]) for run in runs]))
    # one unit of height per line plus one per run heading
    heights = [sum(len(rows) + 1 for _, rows in groups) for _, groups in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(9.5, 1.2 + 0.32 * sum(heights) + 0.5 * len(panels)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    units = list(dict.fromkeys(f"{e['unit']}s" for e in entries))
    for ax, (env, groups), height in zip(axes[:, 0], panels, heights):
        y = height - 0.5
        ticks, labels = [], []
        for run, rows in groups:
            first = rows[0]
            ax.text(
                0.005,
                y,
                f"{run} ({first['split']}): {first['goals']} goals, {first['clusters']} "
                f"{first['unit']}s; vs {short_label(first['reference'])}",
                transform=ax.get_yaxis_transform(),
                fontsize=8,
                fontweight="bold",
                va="center",
                ha="left",
                zorder=5,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
            )
            y -= 1
            for e in rows:
                for key, offset, marker in (("diff", 0.15, "o"), ("diff_cluster", -0.15, "s")):
                    mean, lo, hi = _err(e[key])
                    color = FOREST_COLORS["per_goal" if key == "diff" else "cluster"]
                    ax.errorbar(
                        [mean],
                        [y + offset],
                        xerr=[[lo], [hi]],
                        fmt=marker,
                        color=color,
                        ms=4,
                        capsize=3,
                        elinewidth=1.2,
                    )
                ticks.append(y)
                labels.append(short_label(e["agent"]))
                y -= 1
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set_ylim(-0.1, height)
        ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(ENV_NAMES.get(env, env), fontsize=10, loc="left")
        ax.set_xlabel("Δ score, agent - trained Rememberer (points of 100 x mean reward)", fontsize=8)
    # the legend, once, on the first panel
    handles = [
        axes[0, 0].errorbar([], [], xerr=[], fmt="o", color=FOREST_COLORS["per_goal"], capsize=3),
        axes[0, 0].errorbar([], [], xerr=[], fmt="s", color=FOREST_COLORS["cluster"], capsize=3),
    ]
    height_in = fig.get_figheight()
    fig.suptitle(
        title or "Paired differences from the trained Rememberer, per env and run",
        fontsize=10,
        y=1.0 - 0.08 / height_in,
        va="top",
    )
    fig.legend(
        handles,
        [
            "95% per-goal bootstrap CI (paired; goals resampled one by one)",
            f"95% cluster bootstrap CI (paired; whole {' / '.join(units)} resampled)",
        ],
        loc="upper center",
        ncol=1,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1.0 - 0.3 / height_in),
    )
    return _save(plt, fig, path, top=1.0 - 0.4 / height_in)
