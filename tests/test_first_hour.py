"""What a new user meets first: the defaults, the plan before a long run, and one clear line for
each bad input (exit status 2, the input named with its fix, no half-made run folder left behind).

The CLI runs in a subprocess (the real entry point) where the exit status or a signal matters, and
in-process through ``main()`` elsewhere. No test here loads a model.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rlem_gym  # noqa: F401  (registers the env ids)
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlem_gym.cli", *args], capture_output=True, text=True, timeout=timeout, **kw
    )


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


class ToyEmbedder:
    """A deterministic 8-dimensional embedder (hashed bytes), so a memory saves a vectors file."""

    name, dim = "toy-hash-8", 8

    def encode(self, texts):
        rows = (
            np.array(
                [np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) for t in texts],
                dtype=np.float32,
            )
            + 1.0
        )
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------ defaults
def test_bench_defaults_are_the_settings_that_work():
    cfg = BenchConfig()
    assert cfg.action_decoding == "constrained" and cfg.random_advice is True
    resolved, _ = cfg.with_default_llm()
    assert resolved.llm is not None and not resolved.llm.startswith("smollm2")
    assert BenchConfig(agents=("heuristic", "oracle")).with_default_llm()[0].llm is None  # no model needed


@pytest.mark.parametrize("run", sorted(p.parent.name for p in (ROOT / "docs" / "study").glob("*/config.json")))
def test_every_study_run_keeps_its_settings(run):
    """A committed run's config.json is read back with the settings it was made with, new defaults or not."""
    doc = json.loads((ROOT / "docs" / "study" / run / "config.json").read_text())
    cfg = BenchConfig.from_stored(doc).to_dict()
    for key, value in doc["config"].items():
        assert cfg[key] == (list(value) if isinstance(value, tuple) else value), key
    if "exemplar_order" not in doc["config"]:  # written before the setting existed: the order of its time
        assert cfg["exemplar_order"] == "similarity"


def test_an_old_config_without_a_model_means_smollm2_and_free_decoding():
    old = {"config": {"env": "webshop", "agents": ["rememberer"], "llm": None}}
    cfg = BenchConfig.from_stored(old)
    assert (cfg.llm, cfg.action_decoding, cfg.random_advice, cfg.exemplar_order) == (
        "smollm2",
        "free",
        False,
        "similarity",
    )
    new = {"config_version": 2, "config": BenchConfig(llm="x").to_dict()}
    assert BenchConfig.from_stored(new) == BenchConfig(llm="x")


# ------------------------------------------------------------------------------------ estimate before work
def test_bare_dry_run_prints_the_plan_and_a_projection_and_runs_nothing(tmp_path):
    proc = _cli("bench", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| train | rememberer | 600 |" in out and "| test | react | 100 |" in out and "900 episodes" in out
    assert "projected wall time" in out and "step cost: recorded per model" in out
    assert not (tmp_path / "runs").exists()


def test_a_run_projected_past_an_hour_says_so_at_start(tmp_path):
    from rlem_gym.benchmarks.runner import RunError, Runner
    from rlem_gym.llm.base import LLMError

    def no_model():
        raise LLMError("no model here")

    said: list[str] = []
    cfg = BenchConfig(
        llm="qwen2.5-coder-0.5b:gguf",
        test_split="test[0:50]",
        epochs=1,
        train_split="train[0:10]",
        out=str(tmp_path / "run"),
        progress=False,
    )
    with pytest.raises(RunError, match="no model here"):
        Runner(cfg, llm_factory=no_model, echo=said.append).run()
    assert any("projected to take" in s and "--dry-run" in s for s in said), said
    assert not (tmp_path / "run").exists()  # the model failed before any episode: nothing left behind


def test_a_busy_machine_gives_the_projection_at_the_recording_machines_speed_too():
    from types import SimpleNamespace

    from rlem_gym.benchmarks.estimate import fmt_duration, load_costs, project

    cfg = BenchConfig(llm="qwen2.5-coder-0.5b:gguf", test_split="test[0:10]", epochs=0, progress=False)
    ref = load_costs()["matmul_gflops"]
    items = [SimpleNamespace(phase="test", agent=a) for a in ("rememberer", "static", "heuristic") for _ in range(10)]
    idle = project(cfg, items, gflops_now=ref, load_now=(0.1, 2))
    busy = project(cfg, items, gflops_now=ref / 10, load_now=(2.0, 2))
    assert busy.seconds == pytest.approx(10 * idle.seconds)  # the reading scales the LLM rows
    assert "busy" not in idle.basis
    assert "the machine is busy now (load 2.0 on 2 cores)" in busy.basis
    assert f"at the recording machine's speed the run takes {fmt_duration(idle.seconds)}" in busy.basis
    # a slow machine that is idle is just slow: no note
    assert "busy" not in project(cfg, items, gflops_now=ref / 10, load_now=(0.2, 2)).basis


# ------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_out_is_one_line_and_leaves_nothing(tmp_path, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "run" if where == "under_a_file" else Path("/proc/rlem-gym-test/run")
    proc = _cli("bench", "--agents", "heuristic", "--test-split", "test[0:1]", "--out", str(out), "--no-progress")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert f"--out {out}: cannot write the run folder" in line and "pass --out a folder you can write" in line
    assert blocker.read_text() == "x" and not Path("/proc/rlem-gym-test").exists()


def test_unwritable_html_report_is_one_line(tmp_path, capsys):
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WikiHowMatcher
    from rlem_gym.trajectory import Step

    mem = ExperienceMemory(WikiHowMatcher(lambda s: s))
    mem.update("Search an article to learn how to bake bread.", [Step.of("<p>home</p>", "INPUT(2, bread)", 1.0)])
    mem.save(str(tmp_path / "mem"))
    (tmp_path / "a_file").write_text("x")
    target = tmp_path / "a_file" / "report.html"
    assert main(["memory", "inspect", str(tmp_path / "mem"), "--html", str(target)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--html {target}: cannot write the report" in line and "writable folder" in line


def test_a_slice_past_the_split_is_refused(tmp_path, capsys):
    rc = main(
        [
            "bench",
            "--agents",
            "heuristic",
            "--test-split",
            "test[0:99999]",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
    assert rc == 2
    line = _one_line(capsys.readouterr().err)
    assert "'test[0:99999]' reaches past the end of 'test', which has 100 tasks" in line and "test[0:100]" in line
    assert not (tmp_path / "r").exists()


def test_make_agent_takes_a_model_spec_string_and_refuses_what_cannot_generate():
    from rlem_gym.agents import make_agent

    with pytest.raises(TypeError, match="llm must be an rlem_gym.llm.LLM or a model spec string"):
        make_agent("react", 42, "webshop")
    with pytest.raises(ValueError, match="unknown LLM spec 'no-such-model'"):  # at construction, not at act()
        make_agent("react", "no-such-model", "webshop")


def test_wikihow_refuses_a_reset_option_it_does_not_read():
    env = gym.make("rlem_gym/WikiHow-v0")
    for bad in ({"goal_index": 3}, {"goal_index": "abc"}, {"task_idx": 0}):
        with pytest.raises(ValueError, match="WikiHow has no reset option .* use task_index or task_id"):
            env.reset(seed=0, options=bad)
    _, info = env.reset(seed=0, options={"task_index": 3})
    assert info["task_index"] == 3
    env.close()


def test_memory_inspect_refuses_corrupted_vectors(tmp_path, capsys):
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WebShopMatcher
    from rlem_gym.trajectory import Step

    mem = ExperienceMemory(WebShopMatcher(ToyEmbedder(), lambda obs: obs.split()[0]))
    mem.update("buy a red shirt", [Step.of("search page", "search[red shirt]", 1.0)])
    mem.save(str(tmp_path / "mem"))
    assert main(["memory", "inspect", str(tmp_path / "mem")]) == 0
    capsys.readouterr()
    vectors = next((tmp_path / "mem").glob("vectors-*.npz"))
    vectors.write_bytes(vectors.read_bytes()[:-7] + b"garbage")
    assert main(["memory", "inspect", str(tmp_path / "mem")]) == 2
    assert "the vectors file is truncated or corrupted" in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------ loose ends
def test_a_model_that_does_not_load_leaves_no_run_folder(tmp_path):
    out = tmp_path / "runs" / "r"
    proc = _cli(
        "bench",
        "--agents",
        "react",
        "--epochs",
        "0",
        "--test-split",
        "test[0:1]",
        "--llm",
        "gguf:/nonexistent/model.gguf",
        "--out",
        str(out),
        "--no-progress",
    )
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "cannot load the model 'gguf:/nonexistent/model.gguf'" in line and "pass another --llm" in line
    assert not (tmp_path / "runs").exists()


def test_plot_of_a_run_with_no_episode_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps(
            {
                "config_version": 2,
                "config": BenchConfig().to_dict(),
                "splits": {"test": {"spec": "test", "tasks": ["goal 0"]}},
            }
        )
    )
    assert main(["plot", str(run)]) == 2
    assert "has no finished episode yet" in _one_line(capsys.readouterr().err)
    assert not (run / "results.md").exists()


def test_memory_inspect_on_a_run_folder_points_at_its_memory(tmp_path, capsys):
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WikiHowMatcher

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert main(["memory", "inspect", str(run)]) == 2
    assert str(run / "memory_seed0" / "memory") in _one_line(capsys.readouterr().err)
    ExperienceMemory(WikiHowMatcher(lambda s: s)).save(str(run / "memory_seed0" / "memory"))
    assert main(["memory", "inspect", str(run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "is a run folder, not a memory" in line and f"e.g. {run / 'memory_seed0' / 'memory'}" in line


def test_sigterm_exits_143_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlem_gym.cli",
            "bench",
            "--agents",
            "heuristic,oracle",
            "--seeds",
            "0,1,2,3",
            "--test-split",
            "test",
            "--out",
            str(out),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any((out / "records").glob("*.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "interrupted; rerun the same command to resume" in err
    assert (out / "config.json").exists()  # finished episodes are kept for the rerun


def test_the_demo_preset_is_still_the_committed_demo():
    """The new defaults leave the demo's settings as its committed outputs (docs/demo) were made."""
    from rlem_gym.benchmarks.presets import get_preset

    doc = json.loads((ROOT / "docs" / "demo" / "config.json").read_text())
    assert BenchConfig.from_stored(doc).result_fields() == get_preset("demo").validate().result_fields()


def test_the_readme_reads_in_two_minutes_and_its_numbers_match_their_files():
    """Under 1,500 words; what rlem-gym is comes before the two commands; no issue numbers; the demo
    table's rows are the committed demo's, and the study headline's numbers are the study report's."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.split()) < 1500
    before_code = readme.split("```", 1)[0]
    assert "rlem-gym is" in before_code and "Gymnasium" in before_code
    assert not re.search(r"\b(issue|Issue) #?\d+|#\d{2}\b", readme.split("## Data and licences")[0])
    demo = (ROOT / "docs" / "demo" / "results.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\S+) \| (\d+\.\d \[[\d.]+, [\d.]+\]) \| [\d.]+ \| \d+ \| [\d.]+ \|$", readme, re.M)
    assert len(rows) == 6  # trained, untrained, react, static, heuristic, oracle
    for agent, score in rows:
        assert f"| {agent} | 3 | {score} |" in demo, agent
    study = (ROOT / "docs" / "study" / "README.md").read_text(encoding="utf-8")
    headline = readme.split("## The study", 1)[1].split("##", 1)[0]
    numbers = re.findall(r"-?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\]", headline)
    assert len(numbers) >= 6 and all(n in study for n in numbers)
