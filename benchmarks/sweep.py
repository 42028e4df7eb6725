"""A model sweep: the same benchmark protocol for several LLMs, one after another, in one table.

``rlem-gym bench --llm smollm2-135m,qwen2.5-coder-0.5b ...`` runs the whole protocol (training,
test, every agent) once per model, each in its own run folder ``<out>/<model slug>/``, so a rerun
resumes each model where it stopped and skips finished ones. Models run strictly one after
another: before the next model is built, the previous one is closed and the process's shared
HF weights are released, so two models are never in memory at once.

The sweep folder gets ``sweep_results.md/.csv/.json`` (one row per model x agent, with a model
column) and ``sweep_scores.png`` (grouped bars: agents x models, 95% CIs).
"""

from __future__ import annotations

import csv
import gc
import io
import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from rlem_gym.atomic import atomic_write_text
from rlem_gym.benchmarks.config import BenchConfig, ConfigError
from rlem_gym.benchmarks.report import METRICS, estimate_of, metric_cells, metric_head


def split_llm_specs(text: str | None) -> list[str | None]:
    """The model specs of an ``--llm`` value: one spec, or several separated by commas."""
    if text is None:
        return [None]
    specs = [s.strip() for s in text.split(",")]
    if any(not s for s in specs):
        raise ConfigError(f"--llm {text!r} holds an empty model spec between commas")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"--llm {text!r} names a model twice")
    return list(specs)


def model_slug(spec: str | None) -> str:
    """A folder name for a model spec (``qwen2.5-coder-0.5b``, ``gguf-model.q4``, ...)."""
    text = spec or "default"
    if ":" in text and text.split(":", 1)[0].lower() not in ("hf", "gguf", "openai"):
        text = text.replace(":", "-")
    text = Path(text.split("#")[-1]).name if "/" in text or "\\" in text else text
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return slug[:80] or "model"


def release_models() -> None:
    """Free every model this process holds (HF weights shared across backends), then collect garbage."""
    from rlem_gym.llm.hf import release_weights

    release_weights()
    gc.collect()


def run_sweep(
    cfg: BenchConfig,
    specs: Sequence[str | None],
    *,
    run_one: Callable[[BenchConfig], dict[str, Any]],
) -> dict[str, Any]:
    """Run ``cfg`` once per model spec (``run_one(cfg_for_model)`` returns its results), then write the sweep table.

    ``cfg.out`` is the sweep folder; model ``m`` runs in ``<out>/<slug(m)>``. Returns the sweep
    results: ``{"models": [...], "rows": [{"model", "agent", <metrics>...}], "runs": {model: folder}}``.
    """
    root = Path(cfg.out) if cfg.out else Path("runs") / "sweep"
    slugs = [model_slug(s) for s in specs]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"two model specs map to the same run folder: {slugs}")
    runs: dict[str, str] = {}
    per_model: list[tuple[str, dict[str, Any]]] = []
    for spec, slug in zip(specs, slugs):
        sub = cfg.replace(llm=spec, out=str(root / slug)).validate()
        try:
            results = run_one(sub)
        finally:
            release_models()  # never two models in memory at once
        label = spec or "default"
        runs[label] = str(root / slug)
        per_model.append((label, results))
    sweep = {
        "models": [m for m, _ in per_model],
        "runs": runs,
        "rows": [{"model": m, **row} for m, res in per_model for row in res["rows"]],
    }
    write_sweep(root, sweep)
    return sweep


def sweep_markdown(sweep: dict[str, Any]) -> str:
    """The sweep table as Markdown: model, agent, N, then score, SR, steps and fallbacks with CIs."""
    metrics = [m for m in METRICS if m[0] in ("score", "success_rate", "steps", "fallback_rate", "wall_s")]
    header = ["Model", "Agent", "N"] + [m[1] for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in sweep["rows"]:
        cells = [row["model"], row["agent"], str(row["episodes"])]
        cells += [estimate_of(row[key]).fmt(digits) if key in row else "" for key, _, _, digits in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_csv(sweep: dict[str, Any]) -> str:
    """One line per (model, agent); each metric as mean, ci_lo, ci_hi."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "agent", "episodes"] + metric_head())
    for row in sweep["rows"]:
        writer.writerow([row["model"], row["agent"], row["episodes"]] + metric_cells(row))
    return buf.getvalue()


def write_sweep(root: str | Path, sweep: dict[str, Any]) -> list[Path]:
    """Write sweep_results.json/.csv/.md and sweep_scores.png into ``root`` (atomically); return the paths."""
    from rlem_gym.benchmarks.plots import plot_sweep

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / "sweep_results.json", root / "sweep_results.csv", root / "sweep_results.md"]
    atomic_write_text(paths[0], json.dumps(sweep, indent=2, sort_keys=True) + "\n")
    atomic_write_text(paths[1], sweep_csv(sweep))
    atomic_write_text(
        paths[2],
        "# Model sweep\n\n"
        + sweep_markdown(sweep)
        + "\n\nCells: mean [95% bootstrap CI].\n"
        + "".join(f"\n- `{m}`: run folder `{d}`" for m, d in sweep["runs"].items())
        + "\n",
    )
    paths.append(plot_sweep(sweep, root / "sweep_scores.png"))
    return paths
