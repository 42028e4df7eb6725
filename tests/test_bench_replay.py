"""``bench_replay``: a real run of SmolLM2 (llama.cpp), replayed with forced actions and as a token count.

The replay with the run's own settings must take every committed action again (same prompts,
same cache policy, greedy decoding), and so must the replay with a prefix cache; the token-count
stand-in must count the same reused prompt tokens that the real backend reported in the step log.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import defaultdict

import pytest

from rlem_gym.benchmarks.rundir import iter_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install rlem-gym[llamacpp])")
    out = tmp_path_factory.mktemp("replay") / "run"
    args = [
        "bench",
        "--env",
        "webshop",
        "--llm",
        "smollm2-gguf",
        "--agents",
        "rememberer@untrained,static,react",
        "--epochs",
        "0",
        "--test-split",
        "test[0:1]",
        "--max-steps",
        "3",
        "--max-tokens",
        "16",
        "--action-decoding",
        "constrained",
        "--init-memory",
        "webshop:E0",
        "--llm-kwargs",
        '{"prefix_cache_mb": 0}',
        "--no-progress",
        "--out",
        str(out),
    ]
    proc = subprocess.run([sys.executable, "-m", "rlem_gym.cli", *args], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _replay(run, tmp_path, *extra):
    from rlem_gym.benchmarks.perf.bench_replay import main

    out = tmp_path / "replay.json"
    assert main([str(run), "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_replay_with_the_runs_settings_takes_every_committed_action(run, tmp_path):
    res = _replay(
        run, tmp_path, "--variant", 'same={"prefix_cache_mb": 0}', "--variant", 'cached={"prefix_cache_mb": 256}'
    )
    steps = defaultdict(list)
    for s in res["steps"]:
        steps[s["variant"]].append(s)
    committed = [r for r in iter_jsonl(run / "episodes.jsonl") if r["phase"] == "test"]
    assert len(steps["same"]) == len(steps["cached"]) == len(committed) > 0
    assert all(s["same"] and s["same_prompt"] for s in steps["same"])
    assert all(s["same"] and s["same_prompt"] for s in steps["cached"])  # the cache changes no output
    # the prefix cache serves at least what the live context did, and more over the whole replay
    assert sum(s["cached_tokens"] for s in steps["cached"]) > sum(s["cached_tokens"] for s in steps["same"])
    assert "| static | same |" in res["table"] and "x)" in res["table"]


def test_token_count_stand_in_reuses_what_the_backend_reported(run, tmp_path):
    res = _replay(run, tmp_path, "--simulate", "256")
    logged = {(r["agent"], r["goal"], r["step"]): r for r in iter_jsonl(run / "episodes.jsonl") if r["phase"] == "test"}
    assert len(res["steps"]) == len(logged)
    for s in res["steps"]:
        rec = logged[(s["agent"], s["goal"], s["step"])]
        assert s["same"] and s["same_prompt"]
        assert s["sim_prompt_tokens"] == rec["prompt_tokens"]
        assert s["sim_live_reused"] == rec["cached_tokens"]
        assert s["sim_snapshot_reused"] >= s["sim_live_reused"]
    assert "prefill tok/step" in res["table"]


def test_a_variant_can_swap_the_model_file(run, tmp_path):
    from rlem_gym.benchmarks.perf.bench_quant import requantize
    from rlem_gym.models import smollm2_gguf_path

    q8 = requantize(smollm2_gguf_path(), "Q8_0", tmp_path / "quant")
    res = _replay(run, tmp_path, "--variant", "base={}", "--variant", "q8=" + json.dumps({"llm": f"gguf:{q8}"}))
    steps = defaultdict(list)
    for s in res["steps"]:
        steps[s["variant"]].append(s)
    assert len(steps["base"]) == len(steps["q8"]) > 0
    assert all(s["same"] for s in steps["base"])
    assert res["variants"]["q8"] == {"llm": f"gguf:{q8}"}
    # the first prompt does not depend on the model; the replies (and so the actions) may
    assert steps["q8"][0]["same_prompt"]
