"""Other llama.cpp formats of a zoo model, made from its shipped GGUF, and their prefill and decode speed.

The zoo ships each model in one format (Qwen2.5-Coder: Q4_K_M). llama.cpp can requantise that file
into another format without the network (``llama_model_quantize`` with ``allow_requantize``); the
new file lives next to the assembled models in the user cache. Requantising starts from the
shipped 4-bit weights, not from the original ones: a Q8_0 file made this way holds the Q4_K_M
values almost exactly (8 bits per weight over a 4-bit grid), a Q4_0 file rounds them again.

For each format the script prefills ``--tokens`` tokens and decodes ``--decode`` (as
:mod:`bench_prefill` does, with the same build), and prints one table row per file. Whether a
format changes the agent's actions is measured on the study's episodes by :mod:`bench_replay`
with a variant ``{"llm": "gguf:<file>"}``.

    python -m rlem_gym.benchmarks.perf.bench_quant --model qwen2.5-coder-0.5b --types Q4_0,Q8_0 \\
        --out runs/quant/qwen-0.5b.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.perf.bench_prefill import measure
from rlem_gym.models import model_cache_dir, zoo_model


def requantize(src: Path, kind: str, out_dir: Path) -> Path:
    """``src`` requantised to the llama.cpp format ``kind`` (e.g. ``Q8_0``), written once into ``out_dir``."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}", None)
    if ftype is None:
        known = sorted(
            n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_MOSTLY_")
        )
        raise ValueError(f"unknown llama.cpp format {kind!r}; this build knows: {', '.join(known)}")
    out = out_dir / f"{src.stem}.requant-{kind.lower()}.gguf"
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    log = logging.getLogger("llama-cpp-python")  # llama-cpp-python's sink for llama.cpp's log
    level = log.level
    # not a line per tensor: llama.cpp's INFO reaches this logger as WARNING (its level numbers moved
    # past llama-cpp-python's table), its warnings as ERROR, which still show
    log.setLevel(max(level, logging.ERROR))
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize({src.name} -> {kind}) failed with code {rc}")
        os.replace(tmp, out)
    finally:
        log.setLevel(level)
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b", help="a zoo model (rlem-gym models)")
    p.add_argument("--types", default="Q4_0,Q8_0", help="comma-separated llama.cpp formats to make and time")
    p.add_argument("--tokens", type=int, default=1024, help="prompt tokens to prefill")
    p.add_argument("--decode", type=int, default=64, help="tokens to decode after the prompt")
    p.add_argument("--repeats", type=int, default=3, help="prefill repeats (the best is kept)")
    p.add_argument("--out", default="", help="JSON output")
    args = p.parse_args(argv)

    model = zoo_model(args.model)
    shipped = model.gguf_path()
    files = {model.quant: shipped}
    for kind in (k.strip().upper() for k in args.types.split(",") if k.strip()):
        t0 = time.perf_counter()
        try:
            files[kind] = requantize(shipped, kind, model_cache_dir() / "requantized")
        except ValueError as exc:
            p.error(str(exc))
        print(f"{kind}: {files[kind]} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results = []
    for kind, path in files.items():
        r = measure(f"gguf:{path}", tokens=args.tokens, decode=args.decode, repeats=args.repeats, label=kind)
        r["file_mb"] = round(path.stat().st_size / 2**20, 1)
        results.append(r)
        if args.out:
            atomic_write_json(Path(args.out), {"model": model.name, "results": results})
    print("| format | file MB | prefill tok/s | decode tok/s | prefill share of fp32 matmul peak |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['label']} | {r['file_mb']:,.0f} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.1f} "
            f"| {r['prefill_share_of_peak']:.2f} |"
        )
    print(json.dumps({"system_info": results[0]["system_info"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
