"""Smoke tests of the tooling beside the runner: the performance scripts
(``rlem_gym.benchmarks.perf``) and the study's tooling (``rlem_gym.benchmarks.study``), the latter
on committed published runs restored from their ``records.jsonl.gz`` and ``state.tar.gz``."""

from __future__ import annotations

import importlib
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
