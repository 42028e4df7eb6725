"""Copy a run folder's small outputs somewhere they can be committed (e.g. ``docs/study/<run>/``),
and rebuild a run folder from them, so that a run that takes several sessions can go on.

    python -m rlem_gym.benchmarks.study.publish runs/study/webshop-main docs/study/webshop-main
    python -m rlem_gym.benchmarks.study.publish --restore docs/study/webshop-main runs/study/webshop-main

Copied: ``results.{md,csv,json}``, ``config.json``, ``sessions.jsonl``, every ``*.png``, the per-episode records
once, as ``records.jsonl.gz`` (which ``--restore`` and re-rendering read), the error records if
any (``errors.jsonl.gz``), the step log as
``episodes.jsonl.gz`` when it compresses to at most ``--max-log-mb`` (default 5 MB), and
``state.tar.gz``: the rest of the run folder a resume needs (the memories: ``memory_*/`` and the
training checkpoints ``train/``). Every file is written atomically; the destination's earlier copies
are replaced. Nothing is deleted from the run folder, and a run that is still going can be
published again later.

``--restore`` does the reverse into an empty or missing folder: the records, the step log, the
config, the session log and the memories come back, and rerunning the run's command resumes it (its finished
episodes are skipped).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

from rlem_gym.atomic import atomic_write_bytes
from rlem_gym.benchmarks.rundir import PUBLISHED_ERRORS, PUBLISHED_RECORDS, RunDir, iter_jsonl, jsonl_line

#: files copied as they are, when present
PLAIN = ("results.md", "results.csv", "results.json", "config.json", "sessions.jsonl")


def _gz_jsonl(rows: list[dict]) -> bytes:
    # keys in their written order, as the run folder has them: a restored run is byte-identical, and
    # republishing it changes no committed record
    text = "".join(map(jsonl_line, rows))
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
    run = RunDir(src)
    written += write_records(run, dst)
    state = _state_tar(src)
    if state is not None:
        atomic_write_bytes(dst / "state.tar.gz", state)
        written.append("state.tar.gz")
    log = run.step_log_path
    if log.is_file():
        data = _gz_jsonl(list(iter_jsonl(log)))
        if len(data) <= max_log_mb * 1e6:
            atomic_write_bytes(dst / "episodes.jsonl.gz", data)
            written.append("episodes.jsonl.gz")
        else:
            print(
                f"publish: {log} compresses to {len(data) / 1e6:.1f} MB > {max_log_mb} MB; not copied", file=sys.stderr
            )
    return written


def write_records(run: RunDir, dest: str | Path) -> list[str]:
    """Write ``run``'s records as ``dest/records.jsonl.gz`` and its error records as
    ``dest/errors.jsonl.gz`` (each only when there are any); returns the names written.

    A ``records/`` folder of one JSON per episode that an earlier version published into ``dest``
    is removed, so the records are kept once.
    """
    dst = Path(dest)
    written = []
    for rows, name in ((run.records(), PUBLISHED_RECORDS), (run.errors(), PUBLISHED_ERRORS)):
        if rows:
            atomic_write_bytes(dst / name, _gz_jsonl(rows))
            written.append(name)
    old = dst / "records"
    if old.is_dir() and (dst / PUBLISHED_RECORDS).is_file():
        for stale in old.glob("*.json"):
            stale.unlink()
        if not any(old.iterdir()):
            old.rmdir()
    return written


#: the parts of a run folder that ``state.tar.gz`` holds (memories and training checkpoints)
STATE_GLOBS = ("memory_*", "train")


def _state_tar(src: Path) -> bytes | None:
    parts = sorted({p for pattern in STATE_GLOBS for p in src.glob(pattern) if p.is_dir()})
    if not parts:
        return None

    def reproducible(info: tarfile.TarInfo) -> tarfile.TarInfo:  # same bytes for the same files
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for part in parts:  # tar.add recurses into folders in sorted order
            tar.add(str(part), arcname=part.name, filter=reproducible)
    return buf.getvalue()


def restore(published: str | Path, run_dir: str | Path) -> int:
    """Rebuild a run folder from what :func:`publish` wrote; returns the number of episode records.

    The target must be missing or empty (nothing is overwritten).
    """
    src, dst = Path(published), Path(run_dir)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} holds no published run (no config.json)")
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} is not empty; restore into a new folder")
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "sessions.jsonl"):
        if (src / name).is_file():
            atomic_write_bytes(dst / name, (src / name).read_bytes())
    rd = RunDir(dst)
    n = 0
    for name, write in ((PUBLISHED_RECORDS, rd.write_record), (PUBLISHED_ERRORS, rd.write_error)):
        if (src / name).is_file():
            for line in gzip.decompress((src / name).read_bytes()).decode("utf-8").splitlines():
                rec = json.loads(line)
                write(rec["item"], rec)
                n += name.startswith("records")
    if (src / "episodes.jsonl.gz").is_file():
        atomic_write_bytes(rd.step_log_path, gzip.decompress((src / "episodes.jsonl.gz").read_bytes()))
    if (src / "state.tar.gz").is_file():
        with tarfile.open(src / "state.tar.gz", mode="r:gz") as tar:
            tar.extractall(dst, filter="data")  # our own archive; "data" refuses links and absolute paths
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="the run folder (the --out of a bench run); with --restore, the published folder")
    p.add_argument("dest", help="where to copy its small outputs (created); with --restore, the run folder to rebuild")
    p.add_argument("--max-log-mb", type=float, default=5.0, help="largest compressed step log copied (MB)")
    p.add_argument("--restore", action="store_true", help="rebuild a run folder from a published one")
    args = p.parse_args(argv)
    try:
        if args.restore:
            n = restore(args.run_dir, args.dest)
            print(f"restored {n} episode records into {args.dest}; rerun the run's command to resume it")
            return 0
        names = publish(args.run_dir, args.dest, args.max_log_mb)
    except (FileNotFoundError, FileExistsError) as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 2
    print(f"published {len(names)} files to {args.dest}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
