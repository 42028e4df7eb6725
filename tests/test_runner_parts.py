"""Pure parts of the benchmark runner: bootstrap CIs, the run folder, splits, planning, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlem_gym.benchmarks.report import aggregate, comparable, markdown_table, results_csv
from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.rundir import RunDir, StepLog, iter_jsonl
from rlem_gym.benchmarks.plan import _parse_indices, _parse_slice
from rlem_gym.benchmarks.runner import Split, Task, WorkItem, episode_seed, plan
from rlem_gym.benchmarks.stats import bootstrap_ci
from rlem_gym.benchmarks.config import BenchConfig, ConfigError, field_docs


def test_bootstrap_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(1)
    table = rng.random((3, 40))
    a = bootstrap_ci(table, n_boot=500, seed=0)
    b = bootstrap_ci(table, n_boot=500, seed=0)
    assert a == b
    assert a.lo < a.mean < a.hi
    assert a.mean == pytest.approx(table.mean())
    assert a.n == 120
    # more goals -> a narrower interval
    wide = bootstrap_ci(table[:, :5], n_boot=500)
    assert (wide.hi - wide.lo) > (a.hi - a.lo)


def test_bootstrap_constant_and_missing_values():
    est = bootstrap_ci([[1.0, 1.0, np.nan, 1.0]], n_boot=200)
    assert (est.mean, est.lo, est.hi, est.n) == (1.0, 1.0, 1.0, 3)
    empty = bootstrap_ci([[np.nan, np.nan]])
    assert empty.n == 0 and empty.fmt() == "n/a"
    # the seed-level resampling widens the interval when seeds disagree
    table = np.array([[0.0] * 10, [1.0] * 10])
    est = bootstrap_ci(table, n_boot=1000)
    assert est.mean == 0.5 and est.lo == 0.0 and est.hi == 1.0


def test_step_log_and_clean(tmp_path):
    rd = RunDir(tmp_path)
    with StepLog(rd.step_log_path) as log:
        log.write({"item": "a", "step": 0})
        log.write({"item": "b", "step": 0})
        log.write({"item": "a", "step": 1})
    with open(rd.step_log_path, "a") as fh:
        fh.write('{"item": "a", "st')  # torn line from a kill mid-write
    rd.write_record("a", {"item": "a"})
    assert rd.clean_step_log() == 1
    lines = list(iter_jsonl(rd.step_log_path))
    assert [(x["item"], x["step"]) for x in lines] == [("a", 0), ("a", 1)]
    assert rd.clean_step_log() == 0
    # an error record is replaced when the item is finally committed
    rd.write_error("b", {"item": "b", "error": "x"})
    assert [e["item"] for e in rd.errors()] == ["b"]
    rd.write_record("b", {"item": "b"})
    assert rd.errors() == [] and rd.finished_ids() == {"a", "b"}


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    atomic_write_json(tmp_path / "x.json", {"a": 2})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_split_syntax():
    assert _parse_indices("500-503") == [500, 501, 502]
    assert _parse_indices("1,5,7-9") == [1, 5, 7, 8]
    with pytest.raises(ValueError):
        _parse_indices("5-5")
    assert _parse_slice("test[0:10]") == ("test", slice(0, 10))
    assert _parse_slice("test[3]") == ("test", slice(3, 4))
    assert _parse_slice("train") == ("train", None)


def test_plan_lists_every_item_with_one_seeding_rule():
    cfg = BenchConfig(agents=("rememberer", "react"), epochs=2, seeds=(0, 10))
    train = Split("train", {"split": "train"}, (Task(0, {"task_index": 0}), Task(1, {"task_index": 1})))
    test = Split("test", {"split": "test"}, tuple(Task(i, {"task_index": i}) for i in range(3)))
    tr, te = plan(cfg, train, test)
    assert len(tr) == 2 * 2 * 2 and len(te) == 2 * 2 * 3
    assert [i.episode_seed for i in tr if i.seed == 10] == [10, 11, 12, 13]
    assert [i.epoch for i in tr if i.seed == 0] == [0, 0, 1, 1]
    # every agent gets the same seed on the same test goal
    seeds = {(i.seed, i.task.index): set() for i in te}
    for i in te:
        seeds[(i.seed, i.task.index)].add(i.episode_seed)
    assert all(len(v) == 1 for v in seeds.values())
    assert episode_seed(10, 2) == 12
    assert len({i.id for i in tr + te}) == len(tr) + len(te)
    # no Rememberer, no training
    tr2, _ = plan(cfg.replace(agents=("react",)), train, test)
    assert tr2 == []


def _rec(agent, seed, t, r, steps=3, phase="test", epoch=0):
    return {
        "phase": phase,
        "agent": agent,
        "seed": seed,
        "task_index": t,
        "epoch": epoch,
        "normalized_return": r,
        "return": r,
        "success": r >= 1.0,
        "steps": steps,
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "wall_s": 1.0,
        "fallbacks": 1,
    }


def test_aggregate_rows_and_learning_curve():
    recs = [_rec("react", 0, t, r) for t, r in enumerate([1.0, 0.5, 0.0, 1.0])]
    recs += [_rec("static", 0, t, 0.0) for t in range(4)]
    recs += [
        _rec("rememberer", 0, t, r, phase="train", epoch=e) for e in range(2) for t, r in enumerate([0.0, e * 1.0])
    ]
    res = aggregate(
        recs, agents=["react", "static"], seeds=[0], test_tasks=range(4), train_tasks=range(2), epochs=2, n_boot=300
    )
    react, static = res["rows"]
    assert react["score"]["mean"] == pytest.approx(62.5)
    assert react["success_rate"]["mean"] == pytest.approx(50.0)
    assert react["fallback_rate"]["mean"] == pytest.approx(100 / 3)
    assert static["score"]["mean"] == 0.0 and static["episodes"] == 4
    assert [p["success_rate"]["mean"] for p in res["learning_curve"]] == [0.0, 50.0]
    table = markdown_table(res)
    assert table.splitlines()[2].startswith("| react | 4 | 62.5 [")
    csv_lines = results_csv(res).splitlines()
    assert csv_lines[0].startswith("agent,episodes,failed,score,score_ci_lo,score_ci_hi")
    assert "wall_s" not in json.dumps(comparable(res)["rows"])


def test_config_docs_roundtrip_and_validation():
    docs = field_docs()
    assert "paper uses 15" in docs["max_steps"]
    cfg = BenchConfig(seeds=(1, 2), env_kwargs={"a": 1})
    assert BenchConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown agent"):
        BenchConfig(agents=("rememberer", "gpt")).validate()
    with pytest.raises(ConfigError, match="--workers"):
        BenchConfig(workers=0).validate()
    with pytest.raises(ConfigError, match="unknown config keys"):
        BenchConfig.from_dict({"nope": 1})


def test_failed_training_episodes_are_counted_not_averaged_into_the_curve():
    recs = [
        _rec("rememberer", 0, 0, 1.0, phase="train", epoch=0),
        {**_rec("rememberer", 0, 1, 0.0, phase="train", epoch=0), "status": "error"},
    ]
    errors = [{"phase": "test", "agent": "react", "item": "test-react-s0-t0000"}]
    res = aggregate(
        recs,
        agents=["react"],
        seeds=[0],
        test_tasks=range(1),
        train_tasks=range(2),
        epochs=1,
        errors=errors,
        n_boot=200,
    )
    point = res["learning_curve"][0]
    assert point["episodes"] == 1 and point["score"]["mean"] == 100.0 and point["success_rate"]["mean"] == 100.0
    assert res["progress"]["failed"] == 2 and res["progress"]["train_episodes_done"] == 1
    assert res["rows"][0]["failed"] == 1


def test_work_items_of_older_versions_still_load():
    item = WorkItem("train", "rememberer", 0, Task(3, {"task_index": 3}, "goal 3"), 1, 7)
    old = {**item.as_dict(), "order": 5}  # the field older versions wrote
    assert WorkItem.from_dict(old) == item and "order" not in item.as_dict()
