"""Copy a run folder's small outputs somewhere they can be committed (e.g. ``docs/study/<run>/``).

    python -m rlem_gym.benchmarks.publish runs/study/webshop-main docs/study/webshop-main

Copied: ``results.{md,csv,json}``, ``config.json``, every ``*.png``, the per-episode records
(``records/*.json``, as one ``records.jsonl.gz``), the error records if any, and the step log as
``episodes.jsonl.gz`` when it compresses to at most ``--max-log-mb`` (default 5 MB). Every file is
written atomically; the destination's earlier copies are replaced. Nothing is deleted from the run
folder, and a run that is still going can be published again later.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from rlem_gym.atomic import atomic_write_bytes
from rlem_gym.benchmarks.rundir import iter_jsonl, read_json

#: files copied as they are, when present
PLAIN = ("results.md", "results.csv", "results.json", "config.json")


def _gz_jsonl(rows: list[dict]) -> bytes:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    return gzip.compress(text.encode("utf-8"), mtime=0)


def publish(run_dir: str | Path, dest: str | Path, max_log_mb: float = 5.0) -> list[str]:
    """Copy ``run_dir``'s small outputs into ``dest``; returns the names written."""
    src, dst = Path(run_dir), Path(dest)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} is not an rlem-gym run folder (no config.json)")
    dst.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name in PLAIN:
        if (src / name).is_file():
            atomic_write_bytes(dst / name, (src / name).read_bytes())
            written.append(name)
    for png in sorted(src.glob("*.png")):
        atomic_write_bytes(dst / png.name, png.read_bytes())
        written.append(png.name)
    for folder, name in (("records", "records.jsonl.gz"), ("errors", "errors.jsonl.gz")):
        files = sorted((src / folder).glob("*.json")) if (src / folder).is_dir() else []
        if files:
            atomic_write_bytes(dst / name, _gz_jsonl([read_json(f) for f in files]))
            written.append(name)
    log = src / "episodes.jsonl"
    if log.is_file():
        data = _gz_jsonl(list(iter_jsonl(log)))
        if len(data) <= max_log_mb * 1e6:
            atomic_write_bytes(dst / "episodes.jsonl.gz", data)
            written.append("episodes.jsonl.gz")
        else:
            print(f"publish: {log} compresses to {len(data) / 1e6:.1f} MB > {max_log_mb} MB; not copied",
                  file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="the run folder (the --out of a bench run)")
    p.add_argument("dest", help="where to copy its small outputs (created)")
    p.add_argument("--max-log-mb", type=float, default=5.0, help="largest compressed step log copied (MB)")
    args = p.parse_args(argv)
    try:
        names = publish(args.run_dir, args.dest, args.max_log_mb)
    except FileNotFoundError as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 2
    print(f"published {len(names)} files to {args.dest}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
