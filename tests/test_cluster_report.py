"""Cluster CIs at report time: the clusters from the env data, the results tables, a committed run
re-rendered, and the study's forest plot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlem_gym.benchmarks.study import summary as study
from rlem_gym.benchmarks.clusters import Clusters, task_clusters, wikihow_clusters
from rlem_gym.benchmarks.report import aggregate, markdown_table, paired_table, results_csv, results_markdown
from rlem_gym.benchmarks.stats import Estimate

STUDY = Path(__file__).resolve().parents[1] / "docs" / "study"


def test_webshop_goals_cluster_by_their_target_product():
    from rlem_gym.envs.webshop.catalog import get_catalog
    from rlem_gym.envs.webshop.goals import get_goals

    goals = get_goals(get_catalog(), "synthetic")
    labels = [f"goal {g}" for g in range(50)]
    clusters = task_clusters("webshop", labels, {"split": "test"})
    assert clusters.unit == "target product" and len(clusters.ids) == 50
    assert list(clusters.ids) == [goals[g]["asin"] for g in range(50)]
    assert clusters.count == 35  # the 50 test goals ask for 35 products
    with pytest.raises(ValueError, match="expected a label 'goal <index>'"):
        task_clusters("webshop", ["test[3]"])
    with pytest.raises(ValueError, match="out of range"):
        task_clusters("webshop", [f"goal {len(goals)}"])
    with pytest.raises(ValueError, match="no clusters are defined for env 'alfworld'"):
        task_clusters("alfworld", ["x"])


def test_wikihow_tasks_cluster_by_article():
    from rlem_gym.envs.wikihow.tasks import task_set

    tasks = task_set("microcanon70")
    clusters = task_clusters("wikihow", [t.task_id for t in tasks])
    # no two tasks of the shipped set open a common article: every task is its own cluster
    assert clusters.unit == "article" and clusters.count == 70
    assert list(clusters.ids) == [t.title for t in tasks]
    assert wikihow_clusters([tasks[0].file_stem]).ids == (tasks[0].title,)  # a file stem names the task too
    with pytest.raises(ValueError, match="unknown WikiHow task 'nope'"):
        wikihow_clusters(["nope"])


def test_wikihow_tasks_that_share_an_article_are_joined(monkeypatch):
    from rlem_gym.envs.wikihow import tasks as tasks_mod
    from rlem_gym.envs.wikihow.tasks import SubGoal, Task

    def task(tid, *articles):
        goals = (SubGoal("search"), *(SubGoal("article", a) for a in articles))
        return Task(tid, tid, articles[0], articles[0].lower(), goals, (), False)

    fake = {
        t.task_id: t
        for t in (
            task("a", "Bake Bread"),
            task("b", "Fold a Shirt", "bake bread"),
            task("c", "Tie a Tie"),
            task("d", "Iron", "Fold a Shirt"),
        )
    }
    monkeypatch.setattr(tasks_mod, "all_tasks", lambda: fake)
    # b opens a's article and d opens b's: one cluster of three (named by its first task), c alone
    clusters = wikihow_clusters(["a", "b", "c", "d"])
    assert clusters.ids == ("Bake Bread", "Bake Bread", "Tie a Tie", "Bake Bread") and clusters.count == 2


def _rec(agent, t, r):
    return {
        "phase": "test",
        "agent": agent,
        "seed": 0,
        "task_index": t,
        "epoch": 0,
        "normalized_return": r,
        "return": r,
        "success": r >= 1.0,
        "steps": 3,
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "wall_s": 1.0,
        "fallbacks": 0,
    }


def test_results_tables_show_both_intervals_and_say_what_they_are():
    ref = [1.0, 1.0, 0.0, 0.5, 1.0, 0.0]
    other = [0.0, 0.0, 0.0, 0.5, 1.0, 0.5]
    recs = [_rec("rememberer", t, r) for t, r in enumerate(ref)] + [_rec("react", t, r) for t, r in enumerate(other)]
    clusters = Clusters("target product", ("p", "p", "q", "r", "r", "s"))
    res = aggregate(
        recs,
        agents=["rememberer", "react"],
        seeds=[0],
        test_tasks=range(6),
        n_boot=500,
        reference="rememberer",
        clusters=clusters,
    )
    assert res["clusters"] == {"unit": "target product", "count": 4, "tasks": 6, "ids": ["p", "p", "q", "r", "r", "s"]}
    row = res["rows"][0]
    assert row["score_cluster"]["mean"] == row["score"]["mean"] and row["score_cluster"]["n"] == 6
    diff = res["paired"]["rows"][0]
    assert diff["score_cluster"]["mean"] == pytest.approx(100 * (sum(other) - sum(ref)) / 6)
    assert "steps_cluster" not in row and "success_rate_cluster" in diff
    table = markdown_table(res).splitlines()
    assert table[0].startswith("| Agent | N | Score | Score cluster CI | SR % | SR % cluster CI | Return |")
    cluster_ci = Estimate.from_dict(row["score_cluster"]).fmt(1, interval_only=True)
    assert table[2].startswith(f"| rememberer | 6 | {Estimate.from_dict(row['score']).fmt(1)} | {cluster_ci} |")
    assert paired_table(res).splitlines()[0] == (
        "| Agent | N pairs | Δ Score | Δ Score cluster CI | Δ SR % | Δ SR % cluster CI |"
    )
    md = results_markdown(res, {"env": "webshop"})
    assert "95% cluster bootstrap CI over seeds and target products: the 6 test goals fall into 4 target products" in md
    head, first, second = results_csv(res).splitlines()
    cols = head.split(",")
    assert cols[-8:] == [
        "score_cluster_ci_lo",
        "score_cluster_ci_hi",
        "success_rate_cluster_ci_lo",
        "success_rate_cluster_ci_hi",
        "d_score_cluster_ci_lo",
        "d_score_cluster_ci_hi",
        "d_success_rate_cluster_ci_lo",
        "d_success_rate_cluster_ci_hi",
    ]
    assert first.split(",")[-4:] == ["", "", "", ""]  # the reference has no paired difference
    assert float(second.split(",")[-4]) == pytest.approx(diff["score_cluster"]["lo"])
    # results without clusters keep the earlier tables
    plain = aggregate(
        recs, agents=["rememberer", "react"], seeds=[0], test_tasks=range(6), n_boot=500, reference="rememberer"
    )
    assert "clusters" not in plain and "cluster" not in markdown_table(plain) + paired_table(plain) + results_csv(plain)
    assert "cluster" not in results_markdown(plain, {"env": "webshop"})
    with pytest.raises(ValueError, match="clusters name 2 tasks but the test split has 6"):
        aggregate(recs, agents=["react"], seeds=[0], test_tasks=range(6), clusters=Clusters("article", ("a", "b")))


def test_a_committed_study_run_rerenders_with_cluster_columns(tmp_path):
    from rlem_gym.benchmarks.runner import rerender

    run = tmp_path / "webshop-main"
    run.mkdir()
    shutil.copy(STUDY / "webshop-main" / "config.json", run)
    shutil.copy(STUDY / "webshop-main" / "records.jsonl.gz", run)
    results = rerender(run)
    assert results["clusters"]["count"] == 35 and results["clusters"]["tasks"] == 50
    committed = json.loads((STUDY / "webshop-main" / "results.json").read_text())
    # the per-goal figures are those of the committed table; the cluster CIs come beside them
    for new, old in zip(results["rows"], committed["rows"]):
        assert new["agent"] == old["agent"]
        assert new["score"] == old["score"] and new["success_rate"] == old["success_rate"]
        assert new["score_cluster"]["mean"] == pytest.approx(old["score"]["mean"])
    assert [r["score"] for r in results["paired"]["rows"]] == [r["score"] for r in committed["paired"]["rows"]]
    md = (run / "results.md").read_text()
    assert "over seeds and target products: the 50 test goals fall into 35 target products" in md
    assert "| rememberer | 50 | 57.9 [52.0, 63.9] | [" in md


def _published(tmp_path, names=("webshop-main", "wikihow-main", "webshop-snapshots")):
    root = tmp_path / "study"
    for name in names:
        (root / name).mkdir(parents=True)
        for f in ("config.json", "records.jsonl.gz"):
            shutil.copy(STUDY / name / f, root / name)
    return root


def test_forest_command_writes_the_plot_and_its_numbers(tmp_path, capsys):
    root = _published(tmp_path)
    out = tmp_path / "out"
    assert study.main([str(root), "--forest", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "forest.png"), str(out / "cluster_ci.md")]
    assert (out / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "summary.md").exists()
    md = (out / "cluster_ci.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| webshop") or ln.startswith("| wikihow")]
    assert len(lines) == 10  # 5 rows against the trained Rememberer in each main run
    # the numbers are the committed tables' paired differences, with the cluster CI beside them
    committed = json.loads((STUDY / "webshop-main" / "results.json").read_text())["paired"]["rows"]
    static = Estimate.from_dict(next(r["score"] for r in committed if r["agent"] == "static"))
    line = next(ln for ln in lines if "`webshop-main`" in ln and "| static |" in ln)
    ci = static.fmt(1, signed=True, interval_only=True)
    assert f"| 50 / 35 target products | static | {static.mean:+.1f} | {ci} |" in line
    assert "| 70 / 70 articles | react |" in md
    assert "`webshop-snapshots` (no trained Rememberer row to compare with)" in md
    data = study.forest(root)
    assert [e["run"] for e in data["entries"]] == ["webshop-main"] * 5 + ["wikihow-main"] * 5
    for e in data["entries"]:
        d, c = Estimate.from_dict(e["diff"]), Estimate.from_dict(e["diff_cluster"])
        assert c.mean == pytest.approx(d.mean)
        if e["env"] == "wikihow":  # every task its own article: the same interval
            assert (c.lo, c.hi) == (d.lo, d.hi)


def test_forest_command_refuses_a_folder_without_paired_runs(tmp_path, capsys):
    root = _published(tmp_path, names=("webshop-snapshots",))
    assert study.main([str(root), "--forest"]) == 2
    assert "no published run under" in capsys.readouterr().err
    from rlem_gym.benchmarks.plots import plot_forest

    with pytest.raises(ValueError, match="at least one paired difference"):
        plot_forest([], tmp_path / "x.png")
