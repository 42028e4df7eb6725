"""Every committed study table re-renders byte-identical from its committed records.

A published run keeps its records once, as ``records.jsonl.gz``; ``rlem-gym plot`` on a folder that
holds only that file and ``config.json`` must write the committed ``results.{md,csv,json}`` again,
byte for byte, so a change of the report code that alters a published table is seen here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parents[1] / "docs" / "study"
TABLES = ("results.md", "results.csv", "results.json")
RUNS = sorted(
    str(p.parent.relative_to(STUDY)) for p in STUDY.rglob("results.json") if (p.parent / "records.jsonl.gz").is_file()
)


def test_the_study_runs_are_found():
    assert {"webshop-main", "wikihow-main", "webshop-snapshots", "probes/obsmode-text"} <= set(RUNS)
    assert not list(STUDY.rglob("records/*.json")), "per-episode JSON copies: the records live in records.jsonl.gz"


@pytest.mark.parametrize("name", RUNS)
def test_a_study_table_rerenders_byte_identical(name, tmp_path):
    from rlem_gym.benchmarks.runner import rerender

    published = STUDY / name
    run = tmp_path / "run"
    run.mkdir()
    for f in ("config.json", "records.jsonl.gz", "errors.jsonl.gz"):
        if (published / f).is_file():
            shutil.copy(published / f, run)
    rerender(run)
    for table in TABLES:
        assert (run / table).read_bytes() == (published / table).read_bytes(), f"{name}/{table} differs"
