"""The study summary across published runs: robustness spread and the test-goal learning curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlem_gym.benchmarks.study import summary as study


def _est(mean, half=10.0, n=50):
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}


def _row(agent, score):
    return {"agent": agent, "episodes": 50, "score": _est(score), "success_rate": _est(score / 2)}


def _publish(root: Path, name: str, rows, paired=None, **config):
    folder = root / name
    folder.mkdir(parents=True)
    results = {"meta": {}, "rows": rows, "paired": paired, "learning_curve": []}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "config.json").write_text(json.dumps({"config": {"epochs": 3, "train_split": "train[0:10]", **config}}))


@pytest.fixture()
def published(tmp_path):
    snap = "runs/study/webshop-main/train/seed0/memory_epoch"
    _publish(
        tmp_path,
        "webshop-main",
        [_row("rememberer", 60.0), _row("rememberer@untrained", 40.0), _row("static", 30.0), _row("react", 20.0)],
        paired={"reference": "rememberer", "rows": [{"agent": "rememberer@untrained", "score": _est(-20.0)}]},
        init_memory="webshop:E0",
    )
    _publish(
        tmp_path,
        "webshop-E1",
        [_row("rememberer", 50.0), _row("rememberer@untrained", 45.0), _row("static", 35.0)],
        paired={"reference": "rememberer", "rows": [{"agent": "rememberer@untrained", "score": _est(-5.0)}]},
        init_memory="webshop:E1",
    )
    _publish(
        tmp_path,
        "webshop-snapshots",
        [_row(f"rememberer[init={snap}02]@untrained", 55.0), _row(f"rememberer[init={snap}01]@untrained", 45.0)],
        epochs=0,
        init_memory="webshop:E0",
    )
    (tmp_path / "wikihow-main").mkdir()  # started, not finished: no results.json
    return tmp_path


def test_robustness_spread_over_the_finished_runs(published):
    rob = study.robustness(study.load_runs(published), "webshop")
    assert rob["runs"] == ["webshop-main", "webshop-E1"]
    assert rob["missing"] == ["webshop-E2", "webshop-S1"]
    trained = rob["agents"]["rememberer"]
    assert (trained["mean"], trained["min"], trained["max"]) == (55.0, 50.0, 60.0)
    assert rob["agents"]["static"]["mean"] == 32.5
    assert rob["untrained_minus_trained"]["webshop-E1"]["mean"] == -5.0
    assert rob["settings"]["webshop-E1"] == "init webshop:E1, train train[0:10]"
    assert study.robustness(study.load_runs(published), "wikihow")["missing"] == ["wikihow-main", "wikihow-S1"]


def test_test_curve_orders_untrained_snapshots_and_trained(published):
    curve = study.test_curve(study.load_runs(published), "webshop")
    assert [(p["epoch"], p["score"]["mean"]) for p in curve["points"]] == [(0, 40.0), (1, 45.0), (2, 55.0), (3, 60.0)]
    assert curve["missing"] == []


def test_test_curve_without_the_snapshot_run_says_so(published):
    runs = study.load_runs(published)
    del runs["webshop-snapshots"]
    curve = study.test_curve(runs, "webshop")
    assert [p["epoch"] for p in curve["points"]] == [0, 3]
    assert curve["missing"] == ["webshop-snapshots"]


def test_summary_files(published, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert study.main([str(published), "--out", str(out)]) == 0
    text = (out / "summary.md").read_text()
    assert "| rememberer | 60.0 [50.0, 70.0] | 50.0 [40.0, 60.0] | 55.0 | 50.0 | 60.0 |" in text
    assert "| untrained - trained (paired) | -20.0 [-30.0, -10.0] | -5.0 [-15.0, +5.0] |" in text
    assert "| 2 | 50 | 55.0 [45.0, 65.0] | 27.5 [17.5, 37.5] |" in text
    assert "No run finished yet (missing: wikihow-main, wikihow-S1)" in text
    for name in ("robustness_webshop.png", "test_curve_webshop.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "robustness_wikihow.png").exists()
    assert study.main([str(published / "nope")]) == 2
    # the main run gone (renamed, or not published yet): its views lose their plots, not keep stale ones
    import shutil

    shutil.rmtree(published / "webshop-main")
    assert study.main([str(published), "--out", str(out)]) == 0
    text = (out / "summary.md").read_text()
    assert "Missing (not finished): webshop-main" in text
    for name in ("robustness_webshop.png", "test_curve_webshop.png"):  # webshop-E1 and the snapshots are left
        assert (out / name).exists()
    shutil.rmtree(published / "webshop-E1")
    shutil.rmtree(published / "webshop-snapshots")
    assert study.main([str(published), "--out", str(out)]) == 0
    for name in ("robustness_webshop.png", "test_curve_webshop.png"):
        assert not (out / name).exists()


def _records(agent: str, scores: list[float]) -> list[dict]:
    return [
        {"phase": "test", "agent": agent, "seed": 0, "task_index": i, "normalized_return": x / 100, "status": "ok"}
        for i, x in enumerate(scores)
    ]


def test_a_run_that_does_not_repeat_a_row_references_the_main_runs(published):
    import gzip

    main_scores, s1_scores = [40.0, 50.0, 30.0, 40.0], [60.0, 70.0, 40.0, 70.0]
    recs = _records("rememberer@untrained", main_scores)
    (published / "webshop-main" / "records.jsonl.gz").write_bytes(
        gzip.compress("\n".join(json.dumps(r) for r in recs).encode())
    )
    _publish(published, "webshop-S1", [_row("rememberer", 60.0)], init_memory="webshop:E0", train_split="train[10:20]")
    (published / "webshop-S1" / "records.jsonl.gz").write_bytes(
        gzip.compress("\n".join(json.dumps(r) for r in _records("rememberer", s1_scores)).encode())
    )
    rob = study.robustness(study.load_runs(published), "webshop")
    assert rob["referenced"] == {"webshop-S1": {"rememberer@untrained": "webshop-main"}}
    assert rob["agents"]["rememberer@untrained"]["per_run"]["webshop-S1"]["mean"] == 40.0  # the main run's row
    diff = rob["untrained_minus_trained"]["webshop-S1"]
    assert diff["mean"] == pytest.approx(-20.0) and diff["n"] == 4 and diff["lo"] <= -20.0 <= diff["hi"]
    text = study.summary_markdown([rob], [])
    assert "40.0 [30.0, 50.0] (ref.)" in text and "`webshop-S1` does not re-run `rememberer@untrained`" in text
    # a run whose test settings differ (another step cap) gets no stand-in row
    cfg = json.loads((published / "webshop-S1" / "config.json").read_text())
    cfg["config"]["max_steps"] = 10
    (published / "webshop-S1" / "config.json").write_text(json.dumps(cfg))
    rob = study.robustness(study.load_runs(published), "webshop")
    assert rob["referenced"] == {} and "webshop-S1" not in rob["agents"]["rememberer@untrained"]["per_run"]
