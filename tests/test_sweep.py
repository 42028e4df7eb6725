"""Model sweeps: spec parsing, one model at a time, one table with a model column, the plot, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlem_gym.benchmarks import sweep as sweep_mod
from rlem_gym.benchmarks.config import BenchConfig, ConfigError
from rlem_gym.benchmarks.sweep import model_slug, run_sweep, split_llm_specs


def test_split_llm_specs() -> None:
    assert split_llm_specs("smollm2-135m, qwen2.5-coder-0.5b") == ["smollm2-135m", "qwen2.5-coder-0.5b"]
    assert split_llm_specs("hf:/models/x#q.gguf") == ["hf:/models/x#q.gguf"]
    assert split_llm_specs(None) == [None]
    with pytest.raises(ConfigError, match="empty"):
        split_llm_specs("a,,b")
    with pytest.raises(ConfigError, match="twice"):
        split_llm_specs("a,a")


def test_model_slug_is_a_safe_folder_name() -> None:
    assert model_slug("qwen2.5-coder-0.5b") == "qwen2.5-coder-0.5b"
    assert model_slug("qwen2.5-coder-0.5b:hf") == "qwen2.5-coder-0.5b-hf"
    assert model_slug("gguf:/tmp/models/q.gguf") == "q.gguf"
    assert "/" not in model_slug("openai:http://127.0.0.1:8000/v1#qwen") and model_slug(None) == "default"


def _results(score: float) -> dict:
    est = {"mean": score, "lo": score - 1, "hi": score + 1, "n": 2}
    return {
        "rows": [
            {
                "agent": "static",
                "episodes": 2,
                "score": est,
                "success_rate": est,
                "steps": est,
                "fallback_rate": est,
                "wall_s": est,
            }
        ]
    }


def test_run_sweep_runs_models_one_after_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(sweep_mod, "release_models", lambda: events.append("release"))

    def run_one(cfg: BenchConfig) -> dict:
        events.append(f"run {cfg.llm} -> {Path(cfg.out).name}")
        return _results(10.0 if cfg.llm == "a" else 20.0)

    cfg = BenchConfig(agents=("static",), out=str(tmp_path))
    out = run_sweep(cfg, ["a", "b"], run_one=run_one)
    assert events == ["run a -> a", "release", "run b -> b", "release"]  # never two models at once
    assert [(r["model"], r["score"]["mean"]) for r in out["rows"]] == [("a", 10.0), ("b", 20.0)]
    table = (tmp_path / "sweep_results.md").read_text()
    assert "| Model | Agent |" in table and "| a | static |" in table and "| b | static |" in table
    assert json.loads((tmp_path / "sweep_results.json").read_text())["models"] == ["a", "b"]
    assert (tmp_path / "sweep_results.csv").read_text().splitlines()[1].startswith("a,static,2,10")
    png = (tmp_path / "sweep_scores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_release_models_drops_shared_hf_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlem_gym.llm import hf

    monkeypatch.setitem(hf._WEIGHTS, ("m", None, "cpu", "auto"), object())
    sweep_mod.release_models()
    assert hf._WEIGHTS == {}


def test_cli_sweep_writes_one_table_and_resumes(tmp_path: Path) -> None:
    """An LLM-free row keeps this fast: the sweep machinery, folders, table and resume are real."""
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "rlem_gym.cli",
        "bench",
        "--llm",
        "smollm2,smollm2-gguf",
        "--agents",
        "heuristic",
        "--epochs",
        "0",
        "--test-split",
        "test[0:2]",
        "--max-steps",
        "5",
        "--out",
        str(out),
        "--no-progress",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "model sweep over 2 models" in first.stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["smollm2", "smollm2-gguf"]
    sweep = json.loads((out / "sweep_results.json").read_text())
    assert [r["model"] for r in sweep["rows"]] == ["smollm2", "smollm2-gguf"]
    assert all(r["episodes"] == 2 for r in sweep["rows"])
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # resumes: nothing left to play
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "sweep_results.json").read_text())["rows"] == sweep["rows"]
