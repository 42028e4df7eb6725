"""Measurement helpers shared by the bench scripts: latency summaries, peak RSS, the machine line."""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Sequence

import numpy as np


def latency_summary(seconds: Sequence[float], *, unit: str = "ms", digits: int = 2) -> str:
    """``"median X ms, p95 Y ms, max Z ms"`` of latencies given in seconds (``np.percentile``)."""
    scale = {"ms": 1e3, "s": 1.0}[unit]
    xs = np.asarray(seconds, dtype=float) * scale
    return (f"median {np.percentile(xs, 50):.{digits}f} {unit}, p95 {np.percentile(xs, 95):.{digits}f} {unit}, "
            f"max {xs.max():.{digits}f} {unit}")


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``np.percentile``) of latencies in seconds, in milliseconds."""
    return float(np.percentile(np.asarray(seconds, dtype=float) * 1000.0, q))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_info() -> dict:
    """CPU count, model and memory (GB) of this machine, and the 1-min load average now."""
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = f"{platform.machine()} {line.split(':', 1)[1].strip()}"
                break
    except OSError:
        pass
    try:
        mem_gb: float | None = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gb": mem_gb, "load1": load}


def machine_line() -> str:
    """CPU count, model and memory of this machine, plus the 1-min load average now."""
    m = machine_info()
    mem = f", {m['mem_gb']:.0f} GB" if m["mem_gb"] is not None else ""
    load = m["load1"] if m["load1"] is not None else float("nan")
    return f"{m['cpus']}-core {m['cpu_model']}{mem}, 1-min load average {load:.1f}"


def matmul_gflops(n: int = 1024, budget_s: float = 0.3) -> float:
    """This machine's speed now, as the best float32 ``n x n`` matmul rate (GFLOP/s) within ``budget_s``.

    A proxy for LLM prefill speed (also matrix products on every core), cheap enough to take at the
    start of every run session, so that wall times from different machines can be told apart.
    """
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    best = float("inf")
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        a @ b
        now = time.perf_counter()
        best = min(best, now - t)
        if now - start >= budget_s:
            break
    return round(2 * n**3 / best / 1e9, 1)
