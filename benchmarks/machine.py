"""The machine a run session plays on: its description and its speed now (``sessions.jsonl``)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


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
