"""Runner control flow with a scripted fake LLM (fast): protocol, logs, resume, failures, workers.

The fake LLM answers with an action picked by a hash of the prompt, so different situations get
different (sometimes invalid) actions and the run is deterministic. It tests the runner's
bookkeeping, not any agent's quality; the real model runs in test_cli.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rlem_gym.benchmarks.report import comparable
from rlem_gym.benchmarks.rundir import RunDir, comparable_step_log, iter_jsonl, without_timing
from rlem_gym.benchmarks.runner import Runner, RunError
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.llm.base import LLM, Completion, LLMError

REPLIES = (
    "search[decorative pillow 28 x 28] -> 1.0 it matches the goal",
    "click[buy now] -> 1.0 buy it",
    "click[description] -> 0.5 check it",
    "click[< prev] -> 0.2 go back",
    "search[machine washable shirt] -> 0.8 try other words",
    "nothing useful here",
)


class ScriptedLLM(LLM):
    """Deterministic replies chosen by the prompt's hash; optional failures for the error paths."""

    name = "scripted"
    context_length = 8192

    def __init__(
        self, fail_on: str | None = None, exc: type[BaseException] = RuntimeError, fail_after: int | None = None
    ):
        self.fail_on = fail_on
        self.exc = exc
        self.fail_after = fail_after
        self.calls = 0

    def generate(self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix=""):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise self.exc(f"scripted failure after {self.fail_after} calls")
        if self.fail_on is not None and self.fail_on in prompt[-3000:]:
            raise self.exc(f"scripted failure on {self.fail_on!r}")
        h = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
        text = REPLIES[h % len(REPLIES)]
        return Completion(text, len(prompt) // 4, len(text) // 4, 0.0, "stop")


def scripted_factory() -> LLM:
    return ScriptedLLM()


def _cfg(tmp_path: Path, name: str, **kw) -> BenchConfig:
    base = dict(
        env="webshop",
        agents=("rememberer", "react", "static"),
        train_split="train[0:2]",
        test_split="test[0:2]",
        epochs=2,
        seeds=(0,),
        max_steps=4,
        max_tokens=16,
        progress=False,
        bootstrap=200,
        out=str(tmp_path / name),
    )
    base.update(kw)
    return BenchConfig(**base)


def _strip(records):
    return [without_timing(r) for r in records]


def _log_lines(root: Path):
    return comparable_step_log(root)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted serial run, shared by the tests that compare against it."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = _cfg(tmp, "ref")
    results = Runner(cfg, llm_factory=scripted_factory, echo=lambda m: None).run()
    return cfg, results


def test_protocol_outputs(reference):
    cfg, results = reference
    rd = RunDir(cfg.out)
    records = rd.records()
    train = [r for r in records if r["phase"] == "train"]
    test = [r for r in records if r["phase"] == "test"]
    assert len(train) == 2 * 2 and {r["agent"] for r in train} == {"rememberer"}
    assert [r["epoch"] for r in sorted(train, key=lambda r: r["item"])] == [0, 0, 1, 1]
    assert len(test) == 3 * 2
    # every agent played the same goals with the same seeds
    by_agent = {
        a: sorted((r["task_index"], r["episode_seed"], r["instruction"]) for r in test if r["agent"] == a)
        for a in cfg.agents
    }
    assert by_agent["rememberer"] == by_agent["react"] == by_agent["static"]
    # one log line per step, with the required fields
    lines = list(iter_jsonl(rd.step_log_path))
    assert len(lines) == sum(r["steps"] for r in records)
    for key in (
        "agent",
        "seed",
        "goal",
        "step",
        "obs_hash",
        "prompt_hash",
        "raw_output",
        "action",
        "reward",
        "retrieved_ids",
    ):
        assert key in lines[0]
    assert all(r["steps"] <= cfg.max_steps for r in records)
    # the Rememberer learned during training and retrieved from the frozen memory at test time
    assert any(x["retrieved_ids"] for x in lines if x["phase"] == "train" and x["epoch"] == 1)
    assert any(x["retrieved_ids"] for x in lines if x["phase"] == "test" and x["agent"] == "rememberer")
    assert not any(x["retrieved_ids"] for x in lines if x["agent"] != "rememberer")
    assert (rd.memory_dir(0) / "memory" / "MANIFEST.json").is_file()
    # outputs
    for name in ("results.md", "results.csv", "results.json", "config.json", "scores.png", "learning_curve.png"):
        assert (rd.root / name).is_file(), name
    stored = json.loads(rd.config_path.read_text())
    assert stored["splits"]["test"]["tasks"] == ["goal 0", "goal 1"]
    assert stored["config"]["seeds"] == [0] and "versions" in stored
    assert [row["agent"] for row in results["rows"]] == list(cfg.agents)
    assert all(row["episodes"] == 2 for row in results["rows"])
    score = results["rows"][1]["score"]["mean"]
    expected = 100 * sum(r["normalized_return"] for r in test if r["agent"] == "react") / 2
    assert score == pytest.approx(expected)
    assert len(results["learning_curve"]) == 2


def test_test_phase_does_not_change_the_memory(reference):
    cfg, _ = reference
    rd = RunDir(cfg.out)
    train = sorted((r for r in rd.records() if r["phase"] == "train"), key=lambda r: r["item"])
    last_ckpt = rd.train_dir(0) / train[-1]["checkpoint"]
    a = json.loads((last_ckpt / "MANIFEST.json").read_text())
    b = json.loads((rd.memory_dir(0) / "memory" / "MANIFEST.json").read_text())
    assert a["records"] == b["records"] > 0
    assert a["files"]["records"]["sha256"] == b["files"]["records"]["sha256"]


def _manifest_sha(folder: Path) -> str:
    return json.loads((folder / "MANIFEST.json").read_text())["files"]["records"]["sha256"]


def test_each_epochs_memory_is_kept_and_testable_as_an_initial_memory(reference, tmp_path):
    """memory_epochNN survives the checkpoint pruning; the last one is the trained memory, and a run
    that tests it as an untrained variant's init plays the trained Rememberer's test episodes."""
    cfg, _ = reference
    rd = RunDir(cfg.out)
    tdir = rd.train_dir(0)
    snaps = sorted(p.name for p in tdir.glob("memory_epoch*"))
    assert snaps == ["memory_epoch01", "memory_epoch02"]
    assert _manifest_sha(tdir / "memory_epoch02") == _manifest_sha(rd.memory_dir(0) / "memory")
    assert _manifest_sha(tdir / "memory_epoch01") != _manifest_sha(tdir / "memory_epoch02")  # epoch 2 learned
    # only the last per-episode checkpoint is left
    assert [p.name for p in tdir.glob("memory_after_*")] == ["memory_after_00004"]
    label = f"rememberer[init={tdir / 'memory_epoch02'}]@untrained"
    snap_cfg = _cfg(tmp_path, "snapshot", agents=(label,), epochs=0)
    Runner(snap_cfg, llm_factory=scripted_factory, echo=lambda m: None).run()

    def episodes(root, agent):
        return [
            (x["goal"], x["step"], x["action"], x["reward"], x["retrieved_ids"])
            for x in iter_jsonl(RunDir(root).step_log_path)
            if x["phase"] == "test" and x["agent"] == agent
        ]

    (snap_label,) = snap_cfg.agents
    assert episodes(snap_cfg.out, snap_label) == episodes(cfg.out, "rememberer")
    assert any(ids for *_, ids in episodes(snap_cfg.out, snap_label))


def test_rerun_of_a_finished_run_changes_nothing(reference, tmp_path):
    cfg, results = reference
    before = _log_lines(cfg.out)
    sessions = RunDir(cfg.out).sessions()
    llm = ScriptedLLM()
    again = Runner(cfg, llm_factory=lambda: llm, echo=lambda m: None).run()
    assert llm.calls == 0
    assert RunDir(cfg.out).sessions() == sessions  # no work, no session line
    assert comparable(again) == comparable(results)
    assert _log_lines(cfg.out) == before


@pytest.mark.parametrize("fail_after", [5, 23])  # mid-training (epoch 0/1) and mid-test
def test_interrupted_run_resumes_to_identical_results(reference, tmp_path, fail_after):
    ref_cfg, ref_results = reference
    cfg = _cfg(tmp_path, "resumed")
    with pytest.raises(KeyboardInterrupt):
        Runner(
            cfg, llm_factory=lambda: ScriptedLLM(exc=KeyboardInterrupt, fail_after=fail_after), echo=lambda m: None
        ).run()
    done_before = RunDir(cfg.out).finished_ids()
    assert 0 < len(done_before) < 10
    messages = []
    results = Runner(cfg, llm_factory=scripted_factory, echo=messages.append).run()
    assert any("resuming" in m for m in messages)
    assert comparable(results) == comparable(ref_results)
    assert _strip(RunDir(cfg.out).records()) == _strip(RunDir(ref_cfg.out).records())
    # the unfinished episode's log lines were dropped: the log equals the uninterrupted one
    assert _log_lines(cfg.out) == _log_lines(ref_cfg.out)
    # sessions.jsonl: each session's start (machine, speed) and how it stopped
    sessions = RunDir(cfg.out).sessions()
    assert [(x["event"], x.get("outcome")) for x in sessions] == [
        ("start", None),
        ("stop", "interrupted"),
        ("start", None),
        ("stop", "finished"),
    ]
    assert [x["finished_episodes"] for x in sessions] == [0, len(done_before), len(done_before), 10]
    assert sessions[0]["pending_episodes"] == 10 and sessions[2]["pending_episodes"] == 10 - len(done_before)
    assert all(x["matmul_gflops"] > 0 and x["machine"]["cpus"] >= 1 for x in sessions[::2])
    for snap in ("memory_epoch01", "memory_epoch02"):  # an epoch's snapshot survives the interruption
        assert _manifest_sha(RunDir(cfg.out).train_dir(0) / snap) == _manifest_sha(
            RunDir(ref_cfg.out).train_dir(0) / snap
        )


def test_failed_episode_is_reported_and_the_run_goes_on(tmp_path):
    cfg = _cfg(tmp_path, "fail", agents=("react", "static"), epochs=0, test_split="test[0:3]")
    # goal 1 of the test split: make every prompt about it fail
    goal1 = "Find me"  # placeholder replaced below by the real instruction
    import gymnasium as gym

    env = gym.make("rlem_gym/WebShop-v0", split="test")
    _, info = env.reset(seed=0, options={"task_index": 1})
    goal1 = info["instruction"]
    env.close()
    messages = []
    results = Runner(cfg, llm_factory=lambda: ScriptedLLM(fail_on=goal1), echo=messages.append).run()
    rd = RunDir(cfg.out)
    errors = rd.errors()
    assert sorted(e["item"] for e in errors) == ["test-react-s0-t0001", "test-static-s0-t0001"]
    assert "scripted failure" in errors[0]["traceback"] and "Traceback" in errors[0]["traceback"]
    assert any("failed; the run goes on" in m for m in messages)
    assert [row["episodes"] for row in results["rows"]] == [2, 2]
    assert [row["failed"] for row in results["rows"]] == [1, 1]
    assert "(1 failed)" in (rd.root / "results.md").read_text()
    # a rerun retries the failed episodes only
    llm = ScriptedLLM()
    results = Runner(cfg, llm_factory=lambda: llm, echo=lambda m: None).run()
    assert [row["episodes"] for row in results["rows"]] == [3, 3]
    assert rd.errors() == [] and llm.calls > 0


def test_llm_error_stops_the_run_with_one_line(tmp_path):
    cfg = _cfg(tmp_path, "llmerr", agents=("react",), epochs=0)
    with pytest.raises(RunError, match="rerun the same command to resume"):
        Runner(cfg, llm_factory=lambda: ScriptedLLM(exc=LLMError, fail_after=2), echo=lambda m: None).run()
    assert len(RunDir(cfg.out).finished_ids()) == 0


def test_changed_config_in_the_same_folder_is_refused(reference):
    from rlem_gym.benchmarks.config import ConfigError

    cfg, _ = reference
    with pytest.raises(ConfigError, match="different config.*max_steps"):
        Runner(cfg.replace(max_steps=5), llm_factory=scripted_factory).run()


@pytest.mark.slow  # spawns 2 processes that each import torch and the embedder (~50 s on 2 cores)
def test_local_worker_processes_give_the_serial_table(reference, tmp_path):
    ref_cfg, ref_results = reference
    cfg = _cfg(tmp_path, "workers", workers=2)
    results = Runner(cfg, llm_factory=scripted_factory, echo=lambda m: None).run()
    assert comparable(results) == comparable(ref_results)
    assert _strip(RunDir(cfg.out).records()) == _strip(RunDir(ref_cfg.out).records())
    assert _log_lines(cfg.out) == _log_lines(ref_cfg.out)


def test_config_records_the_hashes_of_the_env_data_files(reference):
    from rlem_gym.envs.webshop import WebShopEnv

    cfg, _ = reference
    assert hasattr(WebShopEnv, "data_files"), "WebShopEnv.data_files (the env's data files) is not defined yet"
    hashes = json.loads(RunDir(cfg.out).config_path.read_text())["data_hashes"]
    assert hashes and all(len(h) == 64 for h in hashes.values())


def test_data_hashes_are_sha256_of_the_existing_files(tmp_path):
    from rlem_gym.benchmarks.runner import _data_hashes

    (tmp_path / "a.json").write_bytes(b"x" * (3 << 20))
    assert _data_hashes([tmp_path / "a.json", tmp_path / "missing.json"]) == {
        "a.json": hashlib.sha256(b"x" * (3 << 20)).hexdigest()
    }


class ThinkThenActLLM(ScriptedLLM):
    """ReAct replies: a thought first, then (after the transcript's "Observation: OK.") an action."""

    def generate(self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix=""):
        self.calls += 1
        text = " search[pillow]" if prompt.rstrip().endswith("Observation: OK.") else " think[look for a pillow]"
        return Completion(text, 7, 3, 0.0, "stop")


def test_records_count_every_llm_call_of_a_step(tmp_path):
    llm = ThinkThenActLLM()
    cfg = _cfg(tmp_path, "think", agents=("react",), epochs=0, max_steps=3)
    Runner(cfg, llm_factory=lambda: llm, echo=lambda m: None).run()
    test = RunDir(cfg.out).records()
    assert len(test) == 2
    for rec in test:
        assert rec["llm_calls"] == 2 * rec["steps"]  # one thought + one action per step
        assert (rec["prompt_tokens"], rec["completion_tokens"]) == (7 * rec["llm_calls"], 3 * rec["llm_calls"])
    assert sum(r["llm_calls"] for r in test) == llm.calls


def test_training_progress_shows_the_sr_of_the_current_epoch(tmp_path, monkeypatch):
    import rlem_gym.benchmarks.runner as runner_mod

    postfixes = []

    class Bar:
        def __init__(self, *a, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            pass

        def set_postfix_str(self, text):
            postfixes.append(text)

    def fake_episode(env, agent, item, *, env_name, log=None):
        success = item.phase == "train" and item.epoch == 0  # epoch 1 wins everything, epoch 2 nothing
        return {
            **item.record_fields(),
            "episode_seed": item.episode_seed,
            "instruction": "",
            "return": float(success),
            "normalized_return": float(success),
            "success": success,
            "steps": 1,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "llm_calls": 0,
            "fallbacks": 0,
            "wall_s": 0.0,
        }

    monkeypatch.setattr("tqdm.auto.tqdm", Bar)
    monkeypatch.setattr(runner_mod, "run_episode", fake_episode)
    cfg = _cfg(tmp_path, "bar", agents=("rememberer",))
    Runner(cfg, llm_factory=scripted_factory, echo=lambda m: None).run()
    train = [p for p in postfixes if p.startswith("epoch")]
    assert train == ["epoch 1 train SR=100%"] * 2 + ["epoch 2 train SR=0%"] * 2


def test_rerender_rebuilds_the_results_from_the_records(reference):
    from rlem_gym.benchmarks.runner import rerender

    cfg, results = reference
    again = rerender(cfg.out)
    assert comparable(again) == comparable(results) and again["progress"] == results["progress"]
