"""Measurement helpers shared by the performance scripts: latency summaries, peak RSS, the machine line.

The machine's description and speed (:func:`machine_info`, :func:`matmul_gflops`) are the runner's
(:mod:`rlem_gym.benchmarks.machine`, which every run session logs); they are re-exported here.
"""

from __future__ import annotations

import resource
from typing import Sequence

import numpy as np

from rlem_gym.benchmarks.machine import machine_info, matmul_gflops

__all__ = ["latency_summary", "machine_info", "machine_line", "matmul_gflops", "peak_rss_mb", "percentile_ms"]


def latency_summary(seconds: Sequence[float], *, unit: str = "ms", digits: int = 2) -> str:
    """``"median X ms, p95 Y ms, max Z ms"`` of latencies given in seconds (``np.percentile``)."""
    scale = {"ms": 1e3, "s": 1.0}[unit]
    xs = np.asarray(seconds, dtype=float) * scale
    return (
        f"median {np.percentile(xs, 50):.{digits}f} {unit}, p95 {np.percentile(xs, 95):.{digits}f} {unit}, "
        f"max {xs.max():.{digits}f} {unit}"
    )


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``np.percentile``) of latencies in seconds, in milliseconds."""
    return float(np.percentile(np.asarray(seconds, dtype=float) * 1000.0, q))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_line() -> str:
    """CPU count, model and memory of this machine, plus the 1-min load average now."""
    m = machine_info()
    mem = f", {m['mem_gb']:.0f} GB" if m["mem_gb"] is not None else ""
    load = m["load1"] if m["load1"] is not None else float("nan")
    return f"{m['cpus']}-core {m['cpu_model']}{mem}, 1-min load average {load:.1f}"
