"""The real ``rlem-gym`` CLI in a subprocess with the shipped SmolLM2-135M (HF backend), tiny budgets.

- smoke: a bench run prints the table and writes every output file;
- resume: a run killed with SIGKILL in the middle of a training episode, rerun with the same
  command, ends with exactly the records, log and table of the uninterrupted run;
- Ray: the test phase as Ray actor tasks (local ``ray.init()``, 2 workers) gives the same table
  as the serial run (greedy decoding).

All slow (the model, the embedder and spaCy load in each process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlem_gym.benchmarks.report import comparable
from rlem_gym.benchmarks.rundir import RunDir, comparable_step_log, iter_jsonl, without_timing

pytestmark = pytest.mark.slow

#: 2 training episodes (1 goal x 2 epochs, so epoch 2 retrieves what epoch 1 stored), then the
#: Rememberer and the static-exemplar agent on 1 test goal; 2 steps and 8 tokens per reply.
TINY = [
    "--llm",
    "smollm2",
    "--agents",
    "rememberer,static",
    "--train-split",
    "train[0:1]",
    "--epochs",
    "2",
    "--test-split",
    "test[0:1]",
    "--max-steps",
    "2",
    "--max-tokens",
    "8",
    "--no-progress",
]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rlem_gym.cli", *args]


def _run(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=timeout)


def _strip(records):
    return [without_timing(r) for r in records]


def _log_lines(root: Path):
    return comparable_step_log(root)


def _results(root: Path) -> dict:
    return json.loads((Path(root) / "results.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ref"
    proc = _run(["bench", *TINY, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_cli_smoke_prints_the_table_and_writes_outputs(reference):
    out, proc = reference
    assert "| Agent | N | Score | Score cluster CI | SR % | SR % cluster CI |" in proc.stdout
    assert "| rememberer | 1 |" in proc.stdout and "| static | 1 |" in proc.stdout
    assert "Rememberer training" in proc.stdout
    for name in (
        "results.md",
        "results.csv",
        "results.json",
        "episodes.jsonl",
        "config.json",
        "scores.png",
        "learning_curve.png",
        "memory_seed0/memory/MANIFEST.json",
    ):
        assert (out / name).is_file(), name
    records = RunDir(out).records()
    assert len(records) == 2 + 2
    lines = list(iter_jsonl(out / "episodes.jsonl"))
    assert len(lines) == sum(r["steps"] for r in records)
    assert all(x["raw_output"] is not None and x["prompt_hash"] for x in lines)
    # the second training episode and the test episode retrieved what the first one stored
    assert any(x["retrieved_ids"] for x in lines if x["item"].startswith("train-rememberer-s0-e01"))
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["max_steps"] == 2 and "transformers" in config["versions"]


def test_kill_9_mid_training_then_rerun_equals_uninterrupted(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "killed"
    args = ["bench", *TINY, "--out", str(out)]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "records" / "train-rememberer-s0-e00-t0000.json"
    log = out / "episodes.jsonl"
    deadline = time.time() + 600
    killed = False
    try:
        while time.time() < deadline and proc.poll() is None:
            if (
                first.exists()
                and log.exists()
                and any(x["item"] == "train-rememberer-s0-e01-t0000" for x in iter_jsonl(log))
            ):
                os.kill(proc.pid, signal.SIGKILL)  # in the middle of the second training episode
                killed = True
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait(timeout=60)
    assert killed, "the run ended before it could be killed mid-training"
    rd = RunDir(out)
    assert rd.finished_ids() == {"train-rememberer-s0-e00-t0000"}
    again = _run(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    assert comparable(_results(out)) == comparable(_results(ref))
    assert _strip(rd.records()) == _strip(RunDir(ref).records())
    assert _log_lines(out) == _log_lines(ref)


def test_ray_two_workers_give_the_serial_table(reference, tmp_path):
    pytest.importorskip("ray")
    ref, _ = reference
    out = tmp_path / "ray"
    proc = _run(["bench", *TINY, "--out", str(out), "--ray", "--ray-workers", "2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert comparable(_results(out)) == comparable(_results(ref))
    assert _strip(RunDir(out).records()) == _strip(RunDir(ref).records())
    assert _log_lines(out) == _log_lines(ref)
