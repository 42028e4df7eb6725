"""LLM-step benchmark: per-step latency of an agent-like ~2k-token prompt, with and without KV-prefix reuse.

Each step's prompt is a fixed preamble (instructions + exemplars, ~1.9k tokens) followed by a
changing ~100-token suffix (the current page), and the model writes ~20 tokens, as an agent step
does. With prefix reuse only the suffix is prefilled; without it the whole prompt is.

    python -m rlem_gym.benchmarks.perf.bench_llm                  # HF, and llama.cpp when installed
    python -m rlem_gym.benchmarks.perf.bench_llm --backends hf --threads 1 --dtype bfloat16

Prints p50 latencies per backend and mode, and the saving ratio (no reuse / reuse).

Zoo mode measures every installed model of the zoo (``rlem-gym models``) on each backend, each in a
fresh subprocess (so its RSS is its own): load time, prefill tok/s (a ~512-token prompt, fresh cache,
one generated token), decode tok/s (64 tokens minus 1 on a short prompt), each also per second of
process CPU time (steadier than wall time on a shared machine), medians of 3 reps, and the RSS
before loading (interpreter + libraries) and after the runs. It updates rlem_gym/data/zoo_speeds.json,
which ``rlem-gym models`` shows:

    python -m rlem_gym.benchmarks.perf.bench_llm --zoo                       # all installed models, both backends
    python -m rlem_gym.benchmarks.perf.bench_llm --zoo --models qwen2.5-coder-0.5b --zoo-backends gguf
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.perf.measure import machine_line, peak_rss_mb
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


# --------------------------------------------------------------------------------------------
# zoo mode
# --------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    """This process's resident set size now, in MiB (Linux /proc; the peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return peak_rss_mb()  # pragma: no cover


def _zoo_prompt(llm: LLM, tokens: int, seed: int) -> str:
    """An agent-like prompt of about ``tokens`` tokens (exemplars of build_preamble)."""
    return build_preamble(llm, tokens, seed=seed) + "Action:"


def measure_zoo_model(spec: str, *, prefill_tokens: int, decode_tokens: int, reps: int, threads: int | None) -> dict:
    """Load ``spec`` (``<zoo name>:<gguf|hf>``) and measure it; returns the result as a dict."""
    from rlem_gym.llm.factory import resolve_zoo_spec

    resolved = resolve_zoo_spec(spec)
    if resolved is None:
        raise ValueError(f"{spec!r} is not a zoo spec")
    model, backend = resolved
    kw = ({"n_threads": threads} if backend == "gguf" else {"num_threads": threads}) if threads else {}
    model.gguf_path()  # assemble first, so that the load time is the backend's alone
    if backend == "hf":
        import torch  # noqa: F401 - counted in the base RSS, as llama_cpp's import is below
    else:
        import llama_cpp  # noqa: F401
    rss_base = _rss_mb()  # the interpreter, rlem_gym and the backend's library, before any weights
    t0 = time.perf_counter()
    llm = make_llm(f"{model.name}:{backend}", **kw)
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mb()
    short = "Write a long story about the sea."
    llm.generate(short, max_tokens=2)  # warm-up: pages the weights in

    def run(prompt: str, max_tokens: int):  # a fresh-cache generation, and its process CPU seconds
        fresh_llm_cache(llm)
        cpu0 = time.process_time()
        out = llm.generate(prompt, max_tokens=max_tokens, stop=None)
        return out, time.process_time() - cpu0

    prefill, decode, prefill_cpu, decode_cpu, prompt_tok, gen_tok = [], [], [], [], [], []
    for rep in range(reps):
        out, cpu = run(_zoo_prompt(llm, prefill_tokens, seed=rep), 1)
        prefill.append(out.prompt_tokens / out.latency_s)
        prefill_cpu.append(out.prompt_tokens / cpu)
        prompt_tok.append(out.prompt_tokens)
        (one, cpu_one), (many, cpu_many) = run(short, 1), run(short, decode_tokens)
        gen_tok.append(many.completion_tokens)
        if many.completion_tokens > 1 and many.latency_s > one.latency_s:
            decode.append((many.completion_tokens - 1) / (many.latency_s - one.latency_s))
            if cpu_many > cpu_one:
                decode_cpu.append((many.completion_tokens - 1) / (cpu_many - cpu_one))
    rss_end = _rss_mb()  # before close(): the weights and KV cache still resident
    llm.close()
    return {
        "model": model.name,
        "backend": backend,
        "name": llm.name,
        "load_s": round(load_s, 2),
        "prefill_tok_s": round(statistics.median(prefill), 1),
        "decode_tok_s": round(statistics.median(decode), 1) if decode else None,
        "prefill_tok_per_cpu_s": round(statistics.median(prefill_cpu), 1),
        "decode_tok_per_cpu_s": round(statistics.median(decode_cpu), 1) if decode_cpu else None,
        "prompt_tokens": int(statistics.median(prompt_tok)),
        "generated_tokens": int(statistics.median(gen_tok)),
        "reps": reps,
        "threads": threads or os.cpu_count(),
        "rss_base_mb": round(rss_base),
        "rss_loaded_mb": round(rss_loaded),
        "rss_mb": round(rss_end),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("llama_cpp_python", "torch", "transformers", "gguf"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def run_zoo(args: argparse.Namespace) -> dict:
    """Measure the installed zoo models (one subprocess per model and backend); write ``args.zoo_out``."""
    from rlem_gym.llm.factory import llama_cpp_available
    from rlem_gym.models import ZOO, ZOO_SPEEDS_PATH, load_zoo_speeds, zoo_model

    names = [zoo_model(n).name for n in args.models.split(",") if n.strip()] if args.models else list(ZOO)
    backends = [b.strip() for b in args.zoo_backends.split(",") if b.strip()]
    skip = {s.strip().lower() for s in (args.skip or "").split(",") if s.strip()}
    out_path = Path(args.zoo_out) if args.zoo_out else ZOO_SPEEDS_PATH
    data = load_zoo_speeds(out_path) if out_path.is_file() else {}
    entries: dict = data.get("models", {})
    skipped: dict[str, str] = {}
    machine = machine_line().rsplit(", 1-min load", 1)[0]
    t_start = time.perf_counter()
    for name in names:
        model = ZOO[name]
        if not model.installed:
            skipped[name] = f"not installed ({model.install_command(model.missing_parts())})"
            print(f"skip {name}: {skipped[name]}", flush=True)
            continue
        for backend in backends:
            spec = f"{name}:{backend}"
            if spec in skip:
                skipped[spec] = "skipped by --skip"
                print(f"skip {spec}: --skip", flush=True)
                continue
            if backend == "gguf" and not llama_cpp_available():
                skipped[spec] = "llama-cpp-python not installed"
                print(f"skip {spec}: llama-cpp-python not installed (pip install rlem-gym[llamacpp])", flush=True)
                continue
            cmd = [
                sys.executable,
                "-m",
                "rlem_gym.benchmarks.perf.bench_llm",
                "--zoo-one",
                spec,
                "--prefill-tokens",
                str(args.prefill_tokens),
                "--decode-tokens",
                str(args.decode_tokens),
                "--reps",
                str(args.reps),
            ] + (["--threads", str(args.threads)] if args.threads else [])
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout)
            except subprocess.TimeoutExpired:
                skipped[spec] = f"timed out after {args.child_timeout} s"
                print(f"skip {spec}: {skipped[spec]}", flush=True)
                continue
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                skipped[spec] = f"failed (exit {proc.returncode}): {last}"
                print(f"skip {spec}: {skipped[spec]}", flush=True)
                continue
            result = json.loads(lines[-1])
            result.update(
                wall_s=round(time.perf_counter() - t0, 1),
                machine=machine,
                date=time.strftime("%Y-%m-%d"),
                load_avg_1min=round(os.getloadavg()[0], 1),
            )
            entries.setdefault(name, {})[backend] = result
            print(
                f"{spec:26s} load {result['load_s']:6.1f} s  prefill {result['prefill_tok_s']:7.1f} tok/s  "
                f"decode {result['decode_tok_s'] or float('nan'):6.1f} tok/s  RSS {result['rss_mb']} MiB "
                f"(peak {result['peak_rss_mb']})  [{result['wall_s']} s]",
                flush=True,
            )
    data = {
        "about": "prefill/decode tokens per second of the zoo models, measured by "
        "`python -m rlem_gym.benchmarks.perf.bench_llm --zoo` (read by `rlem-gym models`); "
        "each entry names the machine it was measured on",
        "command": "python -m rlem_gym.benchmarks.perf.bench_llm " + " ".join(args.argv),
        "settings": {
            "prefill_tokens": args.prefill_tokens,
            "decode_tokens": args.decode_tokens,
            "reps": args.reps,
            "threads": args.threads or os.cpu_count(),
        },
        "versions": _versions(),
        "machine": machine,
        "date": time.strftime("%Y-%m-%d"),
        "models": entries,
        "skipped": skipped,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_path, data)
    print(f"wrote {out_path} ({time.perf_counter() - t_start:.0f} s)")
    return data


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
    zoo = ap.add_argument_group("zoo mode")
    zoo.add_argument("--zoo", action="store_true", help="measure the installed zoo models; write --zoo-out")
    zoo.add_argument("--models", default=None, help="comma list of zoo names (default: every installed one)")
    zoo.add_argument("--zoo-backends", default="gguf,hf", help="backends to measure (gguf = llama.cpp, hf)")
    zoo.add_argument("--skip", default=None, help="comma list of <name>:<backend> to leave out")
    zoo.add_argument("--prefill-tokens", type=int, default=512)
    zoo.add_argument("--decode-tokens", type=int, default=64)
    zoo.add_argument("--reps", type=int, default=3)
    zoo.add_argument(
        "--zoo-out", default=None, help="JSON to update (default: the package's rlem_gym/data/zoo_speeds.json)"
    )
    zoo.add_argument("--child-timeout", type=int, default=900, help="seconds per model and backend")
    zoo.add_argument("--zoo-one", default=None, help=argparse.SUPPRESS)  # internal: one measurement, JSON on stdout
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.zoo_one:
        result = measure_zoo_model(
            args.zoo_one,
            prefill_tokens=args.prefill_tokens,
            decode_tokens=args.decode_tokens,
            reps=args.reps,
            threads=args.threads,
        )
        print(json.dumps(result), flush=True)
        return result
    if args.zoo:
        return run_zoo(args)

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
            print(
                f"  {r.mode:9s} p50 {r.p50:6.2f} s (cpu {r.cpu_p50:.2f} s)  steps {['%.2f' % x for x in r.latencies_s]}",
                flush=True,
            )
        llm.close()

    print()
    print(
        f"load average at end: {os.getloadavg()[0]:.1f} (start {load0:.1f}); threads={args.threads or os.cpu_count()}"
    )
    print(
        f"machine: {machine_line()}, python {platform.python_version()}; steps={args.steps}, "
        f"preamble~{args.preamble_tokens}, suffix~{args.suffix_tokens}, gen<={args.gen_tokens} tokens"
    )
    print(
        "| backend | decode tok/s | prompt tok | reused tok | gen tok | p50 no reuse: wall / CPU (s) "
        "| p50 reuse: wall / CPU (s) | saving (wall, CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    by_backend: dict[str, dict[str, ModeResult]] = {}
    for r in results:
        by_backend.setdefault(r.backend, {})[r.mode] = r
    for name, modes in by_backend.items():
        re, no = modes["reuse"], modes["no-reuse"]
        print(
            f"| {name} | {speeds[name]:.1f} | {int(np.median(re.prompt_tokens))} | "
            f"{int(np.median(re.cached_tokens))} | {int(np.median(re.completion_tokens))} | "
            f"{no.p50:.2f} / {no.cpu_p50:.2f} | {re.p50:.2f} / {re.cpu_p50:.2f} | "
            f"{no.p50 / re.p50:.1f}x, {no.cpu_p50 / re.cpu_p50:.1f}x |"
        )
    raw = {"args": vars(args), "decode_tok_s": speeds, "results": [asdict(r) | {"p50": r.p50} for r in results]}
    if args.json:
        atomic_write_json(args.json, raw)
    return raw


if __name__ == "__main__":
    main()
