"""Measurement helpers shared by the bench scripts: latency summaries, peak RSS, the machine line."""

from __future__ import annotations

import os
import platform
import resource
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


def machine_line() -> str:
    """CPU count, model and memory of this machine, plus the 1-min load average now."""
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = f"{platform.machine()} {line.split(':', 1)[1].strip()}"
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem = f", {mem_gb:.0f} GB"
    except (ValueError, OSError, AttributeError):
        mem = ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()}-core {model}{mem}, 1-min load average {load:.1f}"
