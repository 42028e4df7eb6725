"""Smoke tests of the tooling beside the runner: the performance scripts
(``rlem_gym.benchmarks.perf``) and the study's tooling (``rlem_gym.benchmarks.study``), the latter
on committed published runs restored from their ``records.jsonl.gz`` and ``state.tar.gz``."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import rlem_gym.benchmarks.perf as perf
import rlem_gym.benchmarks.study as study

STUDY = Path(__file__).resolve().parents[1] / "docs" / "study"


def _modules(package) -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."))


@pytest.mark.parametrize("name", _modules(perf) + _modules(study))
def test_every_tooling_module_imports(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} says what it is for"


def test_perf_results_sit_beside_the_scripts():
    text = (Path(perf.__file__).parent / "RESULTS.md").read_text(encoding="utf-8")
    assert "python -m rlem_gym.benchmarks.perf.bench_wikihow_env" in text


def test_a_perf_script_measures(capsys):
    from rlem_gym.benchmarks.perf import bench_wikihow_env

    bench_wikihow_env.main(["--steps", "200"])
    out = capsys.readouterr().out
    assert "steps/s" in out and "-core" in out  # the figure and the machine it was measured on


def test_failure_analysis_reproduces_a_committed_probe_table(tmp_path, capsys):
    """Restore a published probe run from its records alone; its committed failures.md comes out again."""
    from rlem_gym.benchmarks.study import failures
    from rlem_gym.benchmarks.study.publish import restore

    published = STUDY / "probes" / "obsmode-text"
    assert restore(published, tmp_path / "run") == 12
    assert failures.main([str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out == (published / "failures.md").read_text(encoding="utf-8")


def test_retrieval_probe_on_a_restored_run(tmp_path, capsys):
    from rlem_gym.benchmarks.study.probes import retrieval_diagnosis
    from rlem_gym.benchmarks.study.publish import restore

    assert restore(STUDY / "webshop-snapshots", tmp_path / "run") == 100
    agent = "rememberer[init=runs/study/webshop-main/train/seed0/memory_epoch01]@untrained"
    retrieval_diagnosis.main(str(tmp_path / "run"), agent)
    out = capsys.readouterr().out
    assert out.startswith(f"{agent}: ") and "test steps over 50 goals" in out


def test_probe_configs_are_the_committed_runs():
    from rlem_gym.benchmarks.study.probes import STUDY_DOCS, advice_probe, order_probe

    assert STUDY_DOCS == STUDY
    assert advice_probe.CONFIG.is_file() and order_probe.CONFIG.is_file()


def test_option_probe_finds_goal_option_pages_and_scores_clicks(capsys):
    """The option probe's LLM-free part: the oracle reaches product pages that offer the goal's
    options, a click is classified against them, and the summary names chance and every outcome."""
    from rlem_gym.benchmarks.study.probes import option_probe

    assert option_probe.main(["--pages-only", "--goals", "20:26", "--pages", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 1 <= len(rows) <= 3 and all(20 <= r["goal"] < 26 for r in rows)
    for r in rows:
        assert r["wanted"] and set(r["wanted"]) <= set(r["options"]) and r["clickables"] > len(r["options"])
    page = rows[0]
    assert option_probe.classify(f"click[{page['wanted'][0]}]", page) == "goal_option"
    other = next((o for o in page["options"] if o not in page["wanted"]), None)
    if other is not None:
        assert option_probe.classify(f"click[{other}]", page) == "other_option"
    assert option_probe.classify("click[buy now]", page) == "buy_now"
    assert option_probe.classify("click[back to search]", page) == "other"
    scored = [dict(r, outcome="goal_option" if i == 0 else "buy_now") for i, r in enumerate(rows)]
    table = option_probe.summary_table({"probe": scored})
    assert "chance (random valid click)" in table and f"| probe | {len(rows)} |" in table
    assert f"| {100 / len(rows):.1f} [" in table  # one goal option click in len(rows) pages


def test_option_probe_scored_decoding_takes_the_most_likely_valid_click():
    """``--decoding scored``: every valid click is scored on the plain prompt and the most likely one taken."""
    from rlem_gym.agents.adapters import get_adapter
    from rlem_gym.benchmarks.study.probes import option_probe
    from rlem_gym.llm.base import Scores

    class Scoring:
        def score(self, prompt, continuations, *, response_prefix=""):
            self.seen = list(continuations)
            return Scores(tuple(-1.0 if c == "click[buy now]" else -5.0 for c in continuations), 42, 9, 0.0)

    info = {"available_actions": {"has_search_bar": False, "clickables": ["back to search", "black", "buy now"]}}
    page = {"info": info, "instruction": "a black shirt", "obs": "a shirt [SEP] black [SEP] buy now"}
    llm = Scoring()
    assert option_probe.ask_plain(llm, get_adapter("webshop"), page, "scored") == ("click[buy now]", 42)
    assert sorted(llm.seen) == ["click[back to search]", "click[black]", "click[buy now]"]


def test_option_probe_episode_table_from_committed_runs(capsys):
    """The whole-episode view reads published records: the oracle always clicks a goal option next."""
    from rlem_gym.benchmarks.study.probes import option_probe

    assert option_probe.main(["--episodes", str(STUDY / "webshop-heldout")]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    assert "| 100.0 [100.0, 100.0] | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] |" in rows["oracle"]
    assert "rememberer (trained)" in rows and "heuristic" in rows
