"""Prefill and decode speed of one llama.cpp build, against the machine's measured float32 matmul peak.

Run it once per llama-cpp-python build (each in its own environment) to compare builds:

    python -m rlem_gym.benchmarks.perf.bench_prefill --llm qwen2.5-coder-0.5b:gguf --out runs/prefill-avx2.json

It prefills ``--tokens`` tokens from an empty context (best of ``--repeats``), decodes
``--decode`` tokens one at a time after them, and reports tokens/s for both, the model's
multiply-adds per token (2 x parameters) as GFLOP/s, and that as a share of numpy's float32
matmul rate measured in the same run. The build's own feature line (``llama_print_system_info``)
says which instructions it uses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.perf.measure import machine_line, matmul_gflops


def measure(spec: str, *, tokens: int = 1024, decode: int = 64, repeats: int = 3, label: str = "") -> dict:
    """Prefill and decode speed of the llama.cpp model ``spec`` (a make_llm spec), as a JSON-ready dict."""
    import llama_cpp

    from rlem_gym.llm import make_llm

    backend = make_llm(spec)
    llm = getattr(backend, "_llm", None)
    if llm is None:
        raise ValueError(f"{spec} is not a llama.cpp model")
    text = (Path(__file__).resolve().parents[2] / "LICENSE").read_text()
    ids = llm.tokenize(text.encode(), add_bos=False)
    ids = (ids * (tokens // max(1, len(ids)) + 1))[:tokens]
    peak_start = matmul_gflops()
    prefill = []
    for _ in range(repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        prefill.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for tok in ids[:decode]:
        llm.eval([tok])
    decode_s = time.perf_counter() - t0
    peak = max(peak_start, matmul_gflops())
    n_params = int(llama_cpp.llama_model_n_params(llm.model))
    prefill_tps = tokens / min(prefill)
    result = {
        "label": label,
        "llm": spec,
        "machine": machine_line(),
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "threads": llm.n_threads,
        "params": n_params,
        "prompt_tokens": tokens,
        "prefill_tok_s": round(prefill_tps, 1),
        "prefill_s_all": [round(s, 3) for s in prefill],
        "decode_tok_s": round(decode / decode_s, 1),
        "prefill_gflops": round(2 * n_params * prefill_tps / 1e9, 1),
        "matmul_peak_gflops": round(peak, 1),
    }
    result["prefill_share_of_peak"] = round(result["prefill_gflops"] / peak, 3)
    backend.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llm", default="qwen2.5-coder-0.5b:gguf", help="a llama.cpp model spec (make_llm)")
    p.add_argument("--tokens", type=int, default=1024, help="prompt tokens to prefill")
    p.add_argument("--decode", type=int, default=64, help="tokens to decode after the prompt")
    p.add_argument("--repeats", type=int, default=3, help="prefill repeats (the best is kept)")
    p.add_argument("--label", default="", help="a name for this build in the output")
    p.add_argument("--out", default="", help="JSON output")
    args = p.parse_args(argv)
    try:
        result = measure(args.llm, tokens=args.tokens, decode=args.decode, repeats=args.repeats, label=args.label)
    except ValueError as exc:
        p.error(str(exc))
    if args.out:
        atomic_write_json(Path(args.out), result)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
