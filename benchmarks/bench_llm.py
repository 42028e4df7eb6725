"""LLM-step benchmark: per-step latency of an agent-like ~2k-token prompt, with and without KV-prefix reuse.

Each step's prompt is a fixed preamble (instructions + exemplars, ~1.9k tokens) followed by a
changing ~100-token suffix (the current page), and the model writes ~20 tokens, as an agent step
does. With prefix reuse only the suffix is prefilled; without it the whole prompt is.

    python -m rlem_gym.benchmarks.bench_llm                  # HF, and llama.cpp when installed
    python -m rlem_gym.benchmarks.bench_llm --backends hf --threads 1 --dtype bfloat16

Prints p50 latencies per backend and mode, and the saving ratio (no reuse / reuse).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks._measure import machine_line
from rlem_gym.benchmarks.runner import fresh_llm_cache
from rlem_gym.llm import LLM, make_llm

WORDS = (
    "cotton shirt women men size small medium large blue red black white navy slim fit casual long sleeve "
    "waterproof hiking boots leather running shoes lightweight breathable organic tea green herbal pack of "
    "twelve gluten free snack bar chocolate almond vanilla shampoo sulfate free hair care wireless headphones "
    "noise cancelling bluetooth battery charger portable stainless steel water bottle insulated kitchen"
).split()


@dataclass
class ModeResult:
    """Latencies of one backend in one mode."""

    backend: str
    mode: str  # "reuse" | "no-reuse"
    latencies_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # process CPU time per step (all threads)
    prompt_tokens: list[int] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_s)

    @property
    def cpu_p50(self) -> float:
        return statistics.median(self.cpu_s)


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), size=n))


def build_preamble(llm: LLM, target_tokens: int, seed: int = 0) -> str:
    """Instructions plus exemplar trajectories, grown until ``target_tokens`` tokens."""
    rng = np.random.default_rng(seed)
    parts = [
        "You are a web shopping agent. Read the goal and the page, then answer with one action: "
        "search[keywords] or click[button]. Think step by step and prefer items that match every attribute.\n"
    ]
    i = 0
    while llm.count_tokens("".join(parts)) < target_tokens:
        parts.append(
            f"Example {i}. Goal: i need {_sentence(rng, 8)}, price lower than {int(rng.integers(10, 90))}.00 dollars.\n"
            f"Observation: [results] {_sentence(rng, 30)}\n"
            f"Encouraged: click[b0{int(rng.integers(10**7, 10**8))}] -> 1.0; Discouraged: search[{_sentence(rng, 3)}] -> 0.0\n"
            f"Action: click[b0{int(rng.integers(10**7, 10**8))}]\n"
        )
        i += 1
    return "".join(parts)


def build_suffix(llm: LLM, target_tokens: int, step: int) -> str:
    """The changing part of step ``step``: goal + current page, about ``target_tokens`` tokens."""
    rng = np.random.default_rng(1000 + step)
    words: list[str] = []
    text = ""
    while llm.count_tokens(text) < target_tokens:
        words.extend(_sentence(rng, 8).split())
        text = f"Now. Goal: {' '.join(words[:10])}.\nObservation: [item] {' '.join(words[10:])}\nAction:"
    return text


def run_mode(llm: LLM, preamble: str, suffixes: list[str], *, reuse: bool, gen_tokens: int) -> ModeResult:
    """One warm-up step (not timed) then one timed generation per suffix."""
    res = ModeResult(llm.name, "reuse" if reuse else "no-reuse")
    fresh_llm_cache(llm)
    llm.generate(preamble + suffixes[0], max_tokens=2)  # warm-up: fills the prefix cache, pages weights in
    for suffix in suffixes[1:]:
        if not reuse:
            fresh_llm_cache(llm)
        cpu0 = time.process_time()
        out = llm.generate(preamble + suffix, max_tokens=gen_tokens)
        res.cpu_s.append(time.process_time() - cpu0)
        res.latencies_s.append(out.latency_s)
        res.prompt_tokens.append(out.prompt_tokens)
        res.cached_tokens.append(out.cached_tokens)
        res.completion_tokens.append(out.completion_tokens)
    return res


def decode_speed(llm: LLM, n: int = 32) -> float:
    """Generated tokens per second on a short prompt (decode-bound)."""
    fresh_llm_cache(llm)
    out = llm.generate("Write a long story about the sea.", max_tokens=n, stop=None)
    return out.completion_tokens / out.latency_s


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a markdown table; return the raw results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="hf,smollm2-gguf", help="comma list of make_llm specs ('hf' = default HF)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode (plus one warm-up)")
    ap.add_argument("--preamble-tokens", type=int, default=1900)
    ap.add_argument("--suffix-tokens", type=int, default=100)
    ap.add_argument("--gen-tokens", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per backend (default: all cores)")
    ap.add_argument("--dtype", default="auto", help="HF dtype: auto|float32|bfloat16")
    ap.add_argument("--json", default=None, help="also write the raw results to this JSON file")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()[0]
    results: list[ModeResult] = []
    speeds: dict[str, float] = {}
    for spec in [s.strip() for s in args.backends.split(",") if s.strip()]:
        if "gguf" in spec and importlib.util.find_spec("llama_cpp") is None:
            print(f"skip {spec}: llama-cpp-python not installed (pip install rlem-gym[llamacpp])")
            continue
        t0 = time.perf_counter()
        if spec == "hf":
            llm = make_llm(None, num_threads=args.threads, dtype=args.dtype)
        else:
            llm = make_llm(spec, n_threads=args.threads) if "gguf" in spec else make_llm(spec)
        print(f"{llm.name}: loaded in {time.perf_counter() - t0:.1f} s")
        preamble = build_preamble(llm, args.preamble_tokens)
        suffixes = [build_suffix(llm, args.suffix_tokens, i) for i in range(args.steps + 1)]
        speeds[llm.name] = decode_speed(llm)
        for reuse in (True, False):
            r = run_mode(llm, preamble, suffixes, reuse=reuse, gen_tokens=args.gen_tokens)
            results.append(r)
            print(f"  {r.mode:9s} p50 {r.p50:6.2f} s (cpu {r.cpu_p50:.2f} s)  steps {['%.2f' % x for x in r.latencies_s]}",
                  flush=True)
        llm.close()

    print()
    print(f"load average at end: {os.getloadavg()[0]:.1f} (start {load0:.1f}); threads={args.threads or os.cpu_count()}")
    print(f"machine: {machine_line()}, python {platform.python_version()}; steps={args.steps}, "
          f"preamble~{args.preamble_tokens}, suffix~{args.suffix_tokens}, gen<={args.gen_tokens} tokens")
    print("| backend | decode tok/s | prompt tok | reused tok | gen tok | p50 no reuse: wall / CPU (s) "
          "| p50 reuse: wall / CPU (s) | saving (wall, CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    by_backend: dict[str, dict[str, ModeResult]] = {}
    for r in results:
        by_backend.setdefault(r.backend, {})[r.mode] = r
    for name, modes in by_backend.items():
        re, no = modes["reuse"], modes["no-reuse"]
        print(f"| {name} | {speeds[name]:.1f} | {int(np.median(re.prompt_tokens))} | "
              f"{int(np.median(re.cached_tokens))} | {int(np.median(re.completion_tokens))} | "
              f"{no.p50:.2f} / {no.cpu_p50:.2f} | {re.p50:.2f} / {re.cpu_p50:.2f} | "
              f"{no.p50 / re.p50:.1f}x, {no.cpu_p50 / re.cpu_p50:.1f}x |")
    raw = {"args": vars(args), "decode_tok_s": speeds, "results": [asdict(r) | {"p50": r.p50} for r in results]}
    if args.json:
        atomic_write_json(args.json, raw)
    return raw


if __name__ == "__main__":
    main()
