"""The run folder of a benchmark: its layout, atomic writes, the step log and episode records.

Layout of ``runs/NAME/``::

    config.json              what is needed to rerun (config, versions, model, splits, data hashes)
    episodes.jsonl           one line per env step, appended and flushed per step
    records/<item>.json      one completion record per finished episode (atomic: the commit point)
    errors/<item>.json       the traceback of a failed episode (retried on resume)
    train/seed<S>/           training checkpoints: memory after each training episode
    memory_seed<S>/          the Rememberer's memory after training (the memory's own atomic save)
    results.{md,csv,json}    the table, one row per agent, with 95% bootstrap CIs
    *.png                    the figures

A published run (:mod:`rlem_gym.benchmarks.study.publish`) keeps its records once, as
``records.jsonl.gz`` (and ``errors.jsonl.gz``) in place of ``records/`` (``errors/``):
:meth:`RunDir.records` reads them there, so a published run re-renders where it lies.

An episode counts as finished only when its record exists; a record is written with temp file +
fsync + ``os.replace`` (:mod:`rlem_gym.atomic`), so a crash leaves either no record or a whole one.
On resume, step-log lines of episodes without a record are dropped (:meth:`RunDir.clean_step_log`).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from rlem_gym.agents.variants import label_slug
from rlem_gym.atomic import atomic_write_json, atomic_write_text


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _read_json_files(folder: Path) -> list[Any]:
    """The ``*.json`` files of ``folder`` parsed, in file-name order; none when it does not exist."""
    if not folder.is_dir():
        return []
    return [read_json(p) for p in sorted(folder.glob("*.json"))]


def read_jsonl_gz(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The lines of a gzipped JSON Lines file as dicts (a published run's ``records.jsonl.gz``)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def jsonl_line(row: dict[str, Any]) -> str:
    """One JSON Lines line as run folders write it: keys in their given order, non-ASCII kept."""
    return json.dumps(row, ensure_ascii=False) + "\n"


class StepLog:
    """Appends one JSON line per env step to ``episodes.jsonl`` and flushes it at once.

    Each line is written with a single ``write`` on a file opened with ``O_APPEND``, so local
    worker processes can share the file without interleaving partial lines.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None

    def write(self, line: dict[str, Any]) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = jsonl_line(line).encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def write_many(self, lines: Iterable[dict[str, Any]]) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "StepLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Lines of a JSONL file as dicts; a torn last line (from a kill mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                continue


#: a published run's records and error records, one gzipped JSON line each (in place of records/, errors/)
PUBLISHED_RECORDS = "records.jsonl.gz"
PUBLISHED_ERRORS = "errors.jsonl.gz"

#: fields that are wall times: they differ between any two runs that made the same decisions
STEP_TIMING_FIELDS = ("llm_s", "act_s")
RECORD_TIMING_FIELDS = ("wall_s",)


def without_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A step-log line or episode record without its wall-time fields, for comparing two runs."""
    return {k: v for k, v in record.items() if k not in STEP_TIMING_FIELDS and k not in RECORD_TIMING_FIELDS}


def comparable_step_log(root: str | os.PathLike[str]) -> list[str]:
    """The run's step log as sorted JSON lines without wall times: equal for equal decisions."""
    return sorted(json.dumps(without_timing(x), sort_keys=True) for x in iter_jsonl(Path(root) / "episodes.jsonl"))


class RunDir:
    """Paths and record bookkeeping of one run folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def step_log_path(self) -> Path:
        return self.root / "episodes.jsonl"

    @property
    def sessions_path(self) -> Path:
        """``sessions.jsonl``: one line when a run (re)starts work and one when that stops."""
        return self.root / "sessions.jsonl"

    def log_session(self, event: dict[str, Any]) -> None:
        """Append one line to ``sessions.jsonl`` (flushed at once, like the step log)."""
        with StepLog(self.sessions_path) as log:
            log.write(event)

    def sessions(self) -> list[dict[str, Any]]:
        return list(iter_jsonl(self.sessions_path))

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    @property
    def errors_dir(self) -> Path:
        return self.root / "errors"

    def train_dir(self, seed: int, agent: str = "rememberer") -> Path:
        """Training checkpoints of one Rememberer variant (label ``agent``) and seed."""
        if agent == "rememberer":
            return self.root / "train" / f"seed{seed}"
        return self.root / "train" / f"{label_slug(agent)}-seed{seed}"

    def memory_dir(self, seed: int, agent: str = "rememberer") -> Path:
        """Where the memory a Rememberer variant (label ``agent``) is tested with is saved: after
        training, or its initial memory when it does not train."""
        if agent == "rememberer":
            return self.root / f"memory_seed{seed}"
        return self.root / f"memory_{label_slug(agent)}_seed{seed}"

    def record_path(self, item_id: str) -> Path:
        return self.records_dir / f"{item_id}.json"

    def error_path(self, item_id: str) -> Path:
        return self.errors_dir / f"{item_id}.json"

    # -- records -------------------------------------------------------------------------------
    def write_record(self, item_id: str, record: dict[str, Any]) -> None:
        """Commit a finished episode (atomic); removes a stale error record of the same item."""
        atomic_write_json(self.record_path(item_id), record)
        try:
            self.error_path(item_id).unlink()
        except FileNotFoundError:
            pass

    def write_error(self, item_id: str, error: dict[str, Any]) -> None:
        atomic_write_json(self.error_path(item_id), error)

    def finished_ids(self) -> set[str]:
        if not self.records_dir.is_dir():
            return set()
        return {p.stem for p in self.records_dir.glob("*.json")}

    def records(self) -> list[dict[str, Any]]:
        """Every completion record, sorted by item id (so order never depends on timing); a
        published run without ``records/`` has them in ``records.jsonl.gz``, in the same order."""
        return self._rows(self.records_dir, PUBLISHED_RECORDS)

    def errors(self) -> list[dict[str, Any]]:
        """Every error record of a failed (not yet retried) episode, sorted by item id (a published
        run without ``errors/``: from ``errors.jsonl.gz``)."""
        return self._rows(self.errors_dir, PUBLISHED_ERRORS)

    def _rows(self, folder: Path, published: str) -> list[dict[str, Any]]:
        if not folder.is_dir() and (self.root / published).is_file():
            return read_jsonl_gz(self.root / published)
        return _read_json_files(folder)

    def clean_step_log(self) -> int:
        """Drop step lines of episodes that have no completion record; return how many were dropped.

        Called before a (re)run appends anything, so a resumed run's log holds each finished
        episode's steps exactly once.
        """
        path = self.step_log_path
        if not path.exists():
            return 0
        finished = self.finished_ids()
        kept: list[str] = []
        dropped = 0
        changed = False  # a dropped, torn or blank line: the file is rewritten
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                line = raw.strip()
                try:
                    step = json.loads(line) if line else None
                except json.JSONDecodeError:  # a torn last line from a kill mid-write
                    step = None
                if not isinstance(step, dict):
                    changed = True
                elif step.get("item") in finished:
                    kept.append(line + "\n")
                    changed |= raw != kept[-1]
                else:
                    dropped += 1
                    changed = True
        if changed:
            atomic_write_text(path, "".join(kept))
        return dropped
