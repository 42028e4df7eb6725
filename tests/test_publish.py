"""Publishing a run folder's small outputs (docs/study/<run>/)."""

from __future__ import annotations

import gzip
import json

import pytest

from rlem_gym.benchmarks.study.publish import main, publish


def _run_folder(root):
    (root / "records").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"config": {"env": "webshop"}}))
    (root / "results.md").write_text("| Agent |\n")
    (root / "scores.png").write_bytes(b"\x89PNG fake")
    for i, reward in enumerate((0.5, 1.0)):
        (root / "records" / f"test-static-s0-t{i:04d}.json").write_text(json.dumps({"goal": i, "return": reward}))
    (root / "episodes.jsonl").write_text('{"step": 0, "action": "search[x]"}\n{"step": 1, "act')  # torn last line
    return root


def test_publish_copies_results_records_and_the_step_log(tmp_path):
    src = _run_folder(tmp_path / "run")
    names = publish(src, tmp_path / "docs" / "run")
    dst = tmp_path / "docs" / "run"
    assert set(names) == {"config.json", "results.md", "scores.png", "records.jsonl.gz", "episodes.jsonl.gz"}
    # the per-episode records are kept once, as records.jsonl.gz (no records/ folder of copies)
    assert not (dst / "records").exists()
    records = [json.loads(x) for x in gzip.decompress((dst / "records.jsonl.gz").read_bytes()).splitlines()]
    assert [(r["goal"], r["return"]) for r in records] == [(0, 0.5), (1, 1.0)]
    steps = [json.loads(x) for x in gzip.decompress((dst / "episodes.jsonl.gz").read_bytes()).splitlines()]
    assert steps == [{"step": 0, "action": "search[x]"}]  # the torn line is dropped
    assert (dst / "scores.png").read_bytes() == b"\x89PNG fake"
    # a records/ folder an earlier version published is removed; republishing drops a gone record
    (dst / "records").mkdir()
    (dst / "records" / "test-static-s0-t0000.json").write_text("{}")
    (src / "records" / "test-static-s0-t0000.json").unlink()
    publish(src, dst)
    assert not (dst / "records").exists()
    records = [json.loads(x) for x in gzip.decompress((dst / "records.jsonl.gz").read_bytes()).splitlines()]
    assert [r["goal"] for r in records] == [1]


def _reference_run(out):
    """A finished run of the LLM-free rows (heuristic, oracle) on 2 WebShop goals, in ``out``."""
    from rlem_gym.benchmarks.config import BenchConfig
    from rlem_gym.benchmarks.runner import Runner

    cfg = BenchConfig(
        env="webshop",
        agents=("heuristic", "oracle"),
        epochs=0,
        test_split="test[0:2]",
        seeds=(0,),
        max_steps=15,
        progress=False,
        bootstrap=100,
        out=str(out),
    )
    Runner(cfg, echo=lambda m: None).run()
    return cfg


def test_a_published_run_rerenders_from_its_records_alone(tmp_path):
    """publish, then `rlem-gym plot` on the published folder: the same tables from records.jsonl.gz."""
    from rlem_gym.benchmarks.runner import rerender

    _reference_run(tmp_path / "run")
    publish(tmp_path / "run", tmp_path / "pub")
    assert not (tmp_path / "pub" / "records").exists()
    before = {n: (tmp_path / "pub" / n).read_bytes() for n in ("results.md", "results.csv", "results.json")}
    for n in before:
        (tmp_path / "pub" / n).unlink()
    rerender(tmp_path / "pub")
    assert {n: (tmp_path / "pub" / n).read_bytes() for n in before} == before


def test_publish_skips_a_step_log_over_the_limit(tmp_path, capsys):
    src = _run_folder(tmp_path / "run")
    names = publish(src, tmp_path / "out", max_log_mb=1e-9)
    assert "episodes.jsonl.gz" not in names and not (tmp_path / "out" / "episodes.jsonl.gz").exists()
    assert "not copied" in capsys.readouterr().err


def test_publish_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main([str(tmp_path / "x"), str(tmp_path / "y")]) == 2
    assert "not an rlem-gym run folder" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        publish(tmp_path / "x", tmp_path / "y")


def test_restore_rebuilds_a_run_that_resumes_without_replaying(tmp_path):
    """publish -> restore -> rerun: the finished episodes are skipped, the memory comes back."""
    from rlem_gym.benchmarks.rundir import RunDir, comparable_step_log, without_timing
    from rlem_gym.benchmarks.runner import Runner
    from rlem_gym.benchmarks.study.publish import restore

    cfg = _reference_run(tmp_path / "run")
    (tmp_path / "run" / "memory_x_seed0").mkdir()
    (tmp_path / "run" / "memory_x_seed0" / "MANIFEST.json").write_text('{"format": 1}')
    publish(tmp_path / "run", tmp_path / "pub")
    assert restore(tmp_path / "pub", tmp_path / "again") == 4
    assert (tmp_path / "again" / "memory_x_seed0" / "MANIFEST.json").read_text() == '{"format": 1}'
    # the restored records and step log are the run's own bytes, so republishing changes nothing
    original = sorted((tmp_path / "run" / "records").glob("*.json"))
    assert [p.read_bytes() for p in original] == [
        (tmp_path / "again" / "records" / p.name).read_bytes() for p in original
    ]
    assert (tmp_path / "again" / "episodes.jsonl").read_bytes() == (tmp_path / "run" / "episodes.jsonl").read_bytes()
    assert (tmp_path / "again" / "sessions.jsonl").read_bytes() == (tmp_path / "run" / "sessions.jsonl").read_bytes()
    assert [x["event"] for x in RunDir(tmp_path / "again").sessions()] == ["start", "stop"]
    before = comparable_step_log(tmp_path / "again")
    Runner(cfg.replace(out=str(tmp_path / "again")), echo=lambda m: None).run()
    assert comparable_step_log(tmp_path / "again") == before == comparable_step_log(tmp_path / "run")
    assert [without_timing(r) for r in RunDir(tmp_path / "again").records()] == [
        without_timing(r) for r in RunDir(tmp_path / "run").records()
    ]
    with pytest.raises(FileExistsError):
        restore(tmp_path / "pub", tmp_path / "again")
