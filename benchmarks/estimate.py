"""How long a benchmark run will take, before it starts: the plan and a projected wall time.

``rlem-gym bench --dry-run`` prints :func:`format_projection` of the run's work items; a run whose
projection exceeds an hour says so when it starts.

The projection multiplies, per phase and agent, the episodes by the steps per episode and the
seconds per step **recorded** for the same model, env and agent in the study's committed step logs
(``rlem_gym/data/step_costs.json``, written by ``python -m rlem_gym.benchmarks.estimate``). The
recorded cost is scaled to this machine by a matmul speed reading taken now against the one of the
recording machine (``sessions.jsonl``). Another zoo model or backend is scaled by the zoo's measured
prefill and decode speeds (``rlem_gym/data/zoo_speeds.json``) over the recorded prompt and reply
sizes. A model with no such record (a server, a file path) gets no time, and the output says so.

    python -m rlem_gym.benchmarks.estimate docs/study/webshop-main docs/study/wikihow-main \\
        --sessions docs/study/wikihow-main docs/study/webshop-snapshots
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import rlem_gym
from rlem_gym.atomic import atomic_write_json

#: the recorded step costs (see the module docstring)
STEP_COSTS_PATH = Path(rlem_gym.__file__).resolve().parent / "data" / "step_costs.json"
#: a run projected to take longer than this says so when it starts
WARN_AFTER_S = 3600.0


# --------------------------------------------------------------------------------------------
# recording costs from committed step logs
# --------------------------------------------------------------------------------------------
def _read_steps(run: Path) -> Iterable[dict[str, Any]]:
    for name in ("episodes.jsonl.gz", "episodes.jsonl"):
        path = run / name
        if path.is_file():
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
            return
    raise FileNotFoundError(f"{run} holds no episodes.jsonl(.gz) step log")


def _gflops_readings(dirs: Sequence[Path]) -> list[float]:
    out = []
    for d in dirs:
        path = d / "sessions.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip() else {}
                if row.get("matmul_gflops"):
                    out.append(float(row["matmul_gflops"]))
    return out


def record_costs(runs: Sequence[Path], sessions: Sequence[Path]) -> dict[str, Any]:
    """Seconds per step, steps per episode and tokens per step, per (model, env, phase, agent), from
    the step logs of ``runs``; the machine speed from the ``sessions.jsonl`` files of ``sessions``."""
    from rlem_gym.agents.variants import parse_variant

    entries = []
    for run in runs:
        cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]
        acc: dict[tuple[str, str], dict[str, Any]] = defaultdict(
            lambda: {"act_s": 0.0, "steps": 0, "items": set(), "prompt": 0, "completion": 0}
        )
        for step in _read_steps(run):
            a = acc[(step["phase"], parse_variant(step["agent"]).name)]
            a["act_s"] += float(step.get("act_s") or 0.0)
            a["steps"] += 1
            a["items"].add(step["item"])
            a["prompt"] += int(step.get("prompt_tokens") or 0)
            a["completion"] += int(step.get("completion_tokens") or 0)
        for (phase, agent), a in sorted(acc.items()):
            entries.append(
                {
                    "llm": cfg["llm"],
                    "env": cfg["env"],
                    "phase": phase,
                    "agent": agent,
                    "s_per_step": round(a["act_s"] / a["steps"], 3),
                    "steps_per_episode": round(a["steps"] / len(a["items"]), 2),
                    "prompt_tokens_per_step": round(a["prompt"] / a["steps"], 1),
                    "completion_tokens_per_step": round(a["completion"] / a["steps"], 1),
                    "max_steps": cfg["max_steps"],
                    "max_tokens": cfg["max_tokens"],
                    "episodes": len(a["items"]),
                    "steps": a["steps"],
                    "source": str(run),
                }
            )
    readings = _gflops_readings(sessions)
    return {
        "about": "seconds per agent step recorded in committed step logs (act_s: retrieval, prompt and "
        "generation), read by `rlem-gym bench --dry-run` to project a run's wall time",
        "command": "python -m rlem_gym.benchmarks.estimate "
        + " ".join(map(str, runs))
        + " --sessions "
        + " ".join(map(str, sessions)),
        "matmul_gflops": round(statistics.median(readings), 1) if readings else None,
        "matmul_gflops_source": f"median of {len(readings)} session readings in "
        + ", ".join(f"{d}/sessions.jsonl" for d in sessions),
        "entries": entries,
    }


def load_costs(path: str | Path | None = None) -> dict[str, Any]:
    """The recorded costs (``{}`` when the file is absent or unreadable)."""
    try:
        data = json.loads(Path(path or STEP_COSTS_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# projecting a run
# --------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One phase and agent of the plan, with its projected seconds (None = no recorded cost)."""

    phase: str
    agent: str
    episodes: int
    s_per_step: float | None = None
    steps_per_episode: float | None = None
    seconds: float | None = None
    upper_s: float | None = None  # every episode to the step cap


@dataclass
class Projection:
    """The plan of a run and its projected wall time on this machine."""

    rows: list[Row]
    seconds: float | None
    upper_s: float | None
    basis: str

    @property
    def episodes(self) -> int:
        return sum(r.episodes for r in self.rows)


def _zoo_key(spec: str | None) -> tuple[str, str] | None:
    """(zoo name, backend) of a model spec, or None when it is not a zoo model."""
    if not spec:
        return None
    from rlem_gym.llm.factory import resolve_zoo_spec

    try:
        found = resolve_zoo_spec(spec)
    except ValueError:
        return None
    return (found[0].name, found[1]) if found else None


def _model_factor(entry: dict[str, Any], target: tuple[str, str], speeds: dict[str, Any]) -> float | None:
    """How much slower ``target`` takes ``entry``'s step than the recorded model (zoo speeds per CPU-second)."""
    recorded = _zoo_key(entry["llm"])
    if recorded == target:
        return 1.0
    models = speeds.get("models", {})
    try:
        a = models[recorded[0]][recorded[1]] if recorded else None
        b = models[target[0]][target[1]]
    except KeyError:
        return None
    if not a or not b:
        return None
    p, d = entry["prompt_tokens_per_step"], entry["completion_tokens_per_step"]

    def cost(s: dict[str, Any]) -> float:
        return p / s["prefill_tok_per_cpu_s"] + d / s["decode_tok_per_cpu_s"]

    return cost(b) / cost(a)


def project(
    cfg: Any,
    items: Sequence[Any],
    *,
    costs: dict[str, Any] | None = None,
    gflops_now: float | None = None,
    speeds: dict[str, Any] | None = None,
    load_now: tuple[float, int] | None = None,
) -> Projection:
    """The plan of ``items`` (work items) per phase and agent, and its projected wall time.

    ``gflops_now``: this machine's matmul reading (taken here when None). ``load_now``: (1-minute
    load average, CPU count), read here when None; on a busy machine the reading measures the other
    work as much as the hardware, so the basis also gives the projection at the recording machine's speed.
    """
    from rlem_gym.agents.variants import parse_variant
    from rlem_gym.benchmarks.build import uses_llm

    costs = load_costs() if costs is None else costs
    if speeds is None:
        from rlem_gym.models import load_zoo_speeds

        speeds = load_zoo_speeds()
    counts: dict[tuple[str, str], int] = {}
    for item in items:
        counts[(item.phase, item.agent)] = counts.get((item.phase, item.agent), 0) + 1
    target = _zoo_key(cfg.llm)
    ref = costs.get("matmul_gflops")
    if gflops_now is None:
        from rlem_gym.benchmarks.machine import matmul_gflops

        gflops_now = matmul_gflops()
    machine = (ref / gflops_now) if ref and gflops_now else 1.0
    by_key = {(e["env"], e["phase"], e["agent"]): e for e in costs.get("entries", [])}
    rows, used = [], set()
    for (phase, agent), n in counts.items():
        row = Row(phase, agent, n)
        name = parse_variant(agent).name
        entry = by_key.get((cfg.env, phase, name)) or by_key.get((cfg.env, "test", name))
        llm_free = not uses_llm(agent)
        factor = 1.0 if llm_free else (_model_factor(entry, target, speeds) if entry and target else None)
        if entry is not None and factor is not None:
            row.s_per_step = entry["s_per_step"] * factor * (1.0 if llm_free else machine)
            row.steps_per_episode = min(float(entry["steps_per_episode"]), float(cfg.max_steps))
            row.seconds = n * row.steps_per_episode * row.s_per_step
            row.upper_s = n * cfg.max_steps * row.s_per_step
            used.add(entry["source"])
        rows.append(row)
    known = all(r.seconds is not None for r in rows)
    seconds = sum(r.seconds for r in rows) if known else None  # type: ignore[misc]
    upper = sum(r.upper_s for r in rows) if known else None  # type: ignore[misc]
    if known and used:
        model_note = (
            ""
            if all(_zoo_key(e["llm"]) == target for e in costs["entries"] if e["source"] in used)
            else (f", scaled to {cfg.llm} by the zoo's prefill/decode speeds (rlem_gym/data/zoo_speeds.json)")
        )
        basis = (
            f"step cost: recorded per model, not timed here: s/step of {', '.join(sorted(used))} "
            f"(rlem_gym/data/step_costs.json){model_note}; scaled to this machine by a matmul reading now "
            f"({gflops_now:.0f} GFLOP/s against {ref} GFLOP/s when recorded: x{machine:.2f})"
        )
        load, cpus = load_now if load_now is not None else _load_now()
        if machine > 1.0 and load >= 0.5 * cpus:
            unscaled = sum(r.seconds / (1.0 if not uses_llm(r.agent) else machine) for r in rows)  # type: ignore[operator]
            basis += (
                f"; the machine is busy now (load {load:.1f} on {cpus} cores), so the reading is low: "
                f"at the recording machine's speed the run takes {fmt_duration(unscaled)}"
            )
    elif known:
        basis = "no LLM agent: episodes cost about nothing"
    else:
        basis = (
            f"no recorded step cost for model {cfg.llm or 'of the llm_factory'} on {cfg.env}, so no projection: "
            "time a short run first, e.g. --test-split test[0:1] --epochs 0"
        )
    return Projection(rows, seconds, upper, basis)


def _load_now() -> tuple[float, int]:
    """(1-minute load average, CPU count); (0.0, 1) where the platform has no load average."""
    try:
        return os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):
        return 0.0, 1


def fmt_duration(seconds: float | None) -> str:
    """``"42 s"``, ``"12 min"``, ``"3.4 h"``, ``"2.1 days"``; ``"unknown"`` for None."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_projection(p: Projection) -> str:
    """The plan table and the projected wall time."""
    lines = ["| phase | agent | episodes | s per step | steps per episode | projected |", "|---|---|---|---|---|---|"]
    for r in p.rows:
        sps = "?" if r.s_per_step is None else f"{r.s_per_step:.1f}"
        spe = "?" if r.steps_per_episode is None else f"{r.steps_per_episode:.1f}"
        lines.append(f"| {r.phase} | {r.agent} | {r.episodes} | {sps} | {spe} | {fmt_duration(r.seconds)} |")
    total = f"{p.episodes} episodes, projected wall time {fmt_duration(p.seconds)}"
    if p.upper_s is not None and p.seconds is not None and p.upper_s > p.seconds:
        total += f" (every episode to the step cap: {fmt_duration(p.upper_s)})"
    return "\n".join(lines + ["", total, p.basis])


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``rlem_gym/data/step_costs.json`` from committed run folders."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders with config.json and episodes.jsonl(.gz)")
    ap.add_argument(
        "--sessions",
        nargs="+",
        type=Path,
        required=True,
        help="run folders whose sessions.jsonl matmul readings give the recording machine's speed",
    )
    ap.add_argument("--out", type=Path, default=STEP_COSTS_PATH)
    args = ap.parse_args(argv)
    data = record_costs(args.runs, args.sessions)
    atomic_write_json(args.out, data)
    print(f"wrote {args.out}: {len(data['entries'])} entries, machine {data['matmul_gflops']} GFLOP/s", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
