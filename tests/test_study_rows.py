"""The study's rows in one run: variant labels in the runner, initial pools, LLM-free reference rows,
paired differences, and the valid / fallback / Encouraged-copy rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlem_gym.agents.pools import pool_exemplars, pool_items
from rlem_gym.agents.webshop_adapter import STATIC_EXEMPLARS
from rlem_gym.benchmarks.config import BenchConfig, ConfigError
from rlem_gym.agents.variants import parse_variant
from rlem_gym.benchmarks.build import Builder
from rlem_gym.benchmarks.episode import run_episode, shown_encouraged
from rlem_gym.benchmarks.plan import Task, WorkItem, plan
from rlem_gym.benchmarks.rundir import RunDir, iter_jsonl
from rlem_gym.benchmarks.runner import Runner
from rlem_gym.cli import main
from rlem_gym.llm.base import LLM, Completion
from rlem_gym.memory import ExperienceMemory


class CopyFirstAdvice(LLM):
    """Answers with the first exemplar's Encouraged line (an LLM that follows the advice it is shown)."""

    name = "copy-advice"
    context_length = 8192

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix=""):
        self.calls += 1
        body = prompt[: -len(response_prefix)] if response_prefix and prompt.endswith(response_prefix) else prompt
        marker = "Encouraged:\n"
        at = body.find(marker)
        line = body[at + len(marker) :].split("\n", 1)[0] if at >= 0 else "nothing"
        if not line.strip() or line.startswith("Discouraged"):
            line = "click[buy now] -> 1.0 buy"
        return Completion(line, len(prompt) // 4, len(line) // 4, 0.0, "stop")


def _cfg(tmp_path: Path, **kw) -> BenchConfig:
    base = dict(
        env="webshop",
        train_split="train[0:1]",
        test_split="test[0:2]",
        epochs=1,
        seeds=(0,),
        max_steps=3,
        max_tokens=16,
        progress=False,
        bootstrap=200,
        out=str(tmp_path / "run"),
    )
    base.update(kw)
    return BenchConfig(**base)


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"agents": ("rememberer[x=1]",)}, "no setting x"),
        ({"agents": ("rememberer", "rememberer[ ]")}, "empty setting"),
        ({"agents": ("rememberer[k=2]", "rememberer[k=2 ]")}, "same variant"),
        ({"init_memory": "webshop:E9"}, r"neither a shipped pool \(webshop:E0"),
        ({"init_memory": "wikihow:init"}, "not a webshop one"),
        ({"init_memory": "/nonexistent/memory"}, "nor a saved memory"),
        ({"agents": ("static[exemplars=some]",)}, "exemplars must be pool or handwritten"),
        ({"agents": ("heuristic", "oracle"), "reference": "rememberer"}, "not among the agents"),
        ({"exemplar_order": "nearest"}, "--exemplar-order must be one of official, similarity, stable"),
        ({"agents": ("rememberer[exemplar_order=nearest]",)}, "unknown exemplar order 'nearest'"),
    ],
)
def test_bad_study_settings_are_config_errors(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, **kw).validate()


def test_labels_are_canonical_in_the_config_and_the_plan(tmp_path):
    cfg = _cfg(
        tmp_path, agents=("rememberer", "Rememberer[ n_step=1 ]", "rememberer@untrained", "static"), epochs=2
    ).validate()
    assert cfg.agents == ("rememberer", "rememberer[n_step=1]", "rememberer@untrained", "static")
    assert [v.label for v in cfg.trained_variants] == ["rememberer", "rememberer[n_step=1]"]
    tasks = (Task(0, {"task_index": 0}, "a"), Task(1, {"task_index": 1}, "b"))
    from rlem_gym.benchmarks.plan import Split

    train, test = plan(cfg, Split("t", {}, tasks), Split("s", {}, tasks[:1]))
    assert [(i.agent, i.epoch, i.task.index, i.episode_seed) for i in train] == [
        ("rememberer", 0, 0, 0),
        ("rememberer", 0, 1, 1),
        ("rememberer", 1, 0, 2),
        ("rememberer", 1, 1, 3),
        ("rememberer[n_step=1]", 0, 0, 0),
        ("rememberer[n_step=1]", 0, 1, 1),
        ("rememberer[n_step=1]", 1, 0, 2),
        ("rememberer[n_step=1]", 1, 1, 3),
    ]
    assert [i.agent for i in test] == list(cfg.agents)
    ids = {i.id for i in train + test}
    assert len(ids) == len(train) + len(test) and all("[" not in i and "@" not in i for i in ids)
    assert WorkItem.from_dict(test[2].as_dict()).id == test[2].id


# ------------------------------------------------------------------------------------ agents
def test_static_exemplars_follow_the_initial_pool(tmp_path):
    llm = CopyFirstAdvice()
    tasks = lambda exemplars: [e.input.task for e in exemplars]  # noqa: E731
    e0 = tasks(pool_exemplars("webshop:E0", "webshop"))
    with_pool = _cfg(tmp_path, init_memory="webshop:E0")
    assert tasks(Builder(with_pool).agent(parse_variant("static"), llm).exemplars) == e0  # the study setting
    assert Builder(with_pool).agent(parse_variant("static[exemplars=handwritten]"), llm).exemplars == list(
        STATIC_EXEMPLARS
    )
    plain = _cfg(tmp_path)
    assert Builder(plain).agent(parse_variant("static"), llm).exemplars == list(STATIC_EXEMPLARS)
    assert (
        tasks(Builder(plain).agent(parse_variant("static[exemplars=pool]"), llm).exemplars) == e0
    )  # the env's official pool
    e2 = tasks(pool_exemplars("webshop:E2", "webshop"))
    assert tasks(Builder(with_pool).agent(parse_variant("static[init=webshop:E2]"), llm).exemplars) == e2 != e0


def test_variant_settings_reach_the_agent(tmp_path):
    cfg = _cfg(tmp_path, discouraged=True, k=2)
    llm = CopyFirstAdvice()
    agent = Builder(cfg).agent(parse_variant("rememberer[discouraged=false,k=1]"), llm, memory=None)
    assert agent.discouraged is False and agent.k == 1
    assert Builder(cfg).agent(parse_variant("rememberer"), llm).discouraged is True
    assert Builder(cfg).agent(parse_variant("rememberer"), llm).exemplar_order == "official"  # the run's default
    assert (
        Builder(_cfg(tmp_path, exemplar_order="similarity")).agent(parse_variant("rememberer"), llm).exemplar_order
        == "similarity"
    )
    assert Builder(cfg).agent(parse_variant("rememberer[exemplar_order=stable]"), llm).exemplar_order == "stable"
    heuristic = Builder(cfg).agent(parse_variant("heuristic"), llm)
    assert heuristic.uses_llm is False and not hasattr(heuristic, "llm")


def test_encouraged_copies_are_counted(tmp_path, minilm):
    """A model that copies the first exemplar's advice: its search step is the retrieved Encouraged action."""
    import gymnasium as gym

    import rlem_gym  # noqa: F401
    from rlem_gym.agents import get_adapter
    from rlem_gym.agents.pools import import_pool

    memory = import_pool("webshop:E0", get_adapter("webshop").make_matcher(minilm))
    # the fake copies the first exemplar shown: with the most similar shown first, that is rank 0
    cfg = _cfg(tmp_path, exemplar_order="similarity")
    agent = Builder(cfg).agent(parse_variant("rememberer"), CopyFirstAdvice(), memory).eval()
    env = gym.make("rlem_gym/WebShop-v0", split="test", shown_results=3, max_steps=3, max_episode_steps=3)
    lines = []
    item = WorkItem("test", "rememberer", 0, Task(0, {"task_index": 0}, "goal 0"), 0, 0)
    record = run_episode(env, agent, item, env_name="webshop", log=lines.append)
    env.close()
    assert record["actions"][0] == "search[3 ounce bottle bright citrus deodorant sensitive skin]"
    assert lines[0]["copied_encouraged"] is True and not lines[0]["fallback"]
    assert record["encouraged_copies"] == sum(x["copied_encouraged"] for x in lines) >= 1
    assert record["encouraged_shown_steps"] >= record["encouraged_copies"]

    class Step:  # shown_encouraged reads only the records whose exemplars were in the prompt
        retrieved = [type("Hit", (), {"record": r})() for r in memory.records()]
        retrieved_ids = [memory.records()[1].id]

    assert shown_encouraged(Step) == {memory.records()[1].sorted_actions()[0][0]}


# ------------------------------------------------------------------------------------ runs
def test_cli_run_of_reference_rows_needs_no_llm(tmp_path, capsys):
    """heuristic + oracle on 3 WebShop goals: no model is loaded (the --llm server does not exist)."""
    out = tmp_path / "ref"
    args = [
        "bench",
        "--env",
        "webshop",
        "--agents",
        "heuristic,oracle",
        "--test-split",
        "test[0:3]",
        "--llm",
        "openai:http://127.0.0.1:9/v1#none",
        "--out",
        str(out),
        "--no-progress",
    ]
    rc = main(args)
    assert rc == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    rows = {r["agent"]: r for r in results["rows"]}
    assert rows["heuristic"]["score"]["mean"] == pytest.approx(100 * (0.8 + 5 / 7 + 2 / 3) / 3)
    assert rows["oracle"]["score"]["mean"] == 100.0 and rows["oracle"]["success_rate"]["mean"] == 100.0
    assert rows["heuristic"]["valid_rate"]["mean"] == 100.0 and rows["heuristic"]["fallback_rate"]["mean"] == 0.0
    assert rows["oracle"]["encouraged_rate"]["mean"] is None  # no memory: n/a
    paired = results["paired"]
    assert paired["reference"] == "heuristic" and [r["agent"] for r in paired["rows"]] == ["oracle"]
    diff = paired["rows"][0]["score"]
    assert diff["mean"] == pytest.approx(100.0 - rows["heuristic"]["score"]["mean"]) and diff["n"] == 3
    assert 0 < diff["lo"] <= diff["mean"] <= diff["hi"]
    md = (out / "results.md").read_text()
    assert "## Paired differences from `heuristic`" in md and "| oracle | 3 | +" in md
    assert "none (no LLM agent)" in md
    # --reference picks the other row; the run is not redone (same results fields)
    rc = main([*args, "--reference", "oracle"])
    assert rc == 0
    flipped = json.loads((out / "results.json").read_text())["paired"]
    assert flipped["reference"] == "oracle" and flipped["rows"][0]["score"]["mean"] == pytest.approx(-diff["mean"])
    # config.json names the reference of the tables now on disk (a rerender from it draws the same)
    assert json.loads((out / "config.json").read_text())["config"]["reference"] == "oracle"


def test_runner_plays_every_variant(tmp_path):
    # exemplar_order: the fake copies the first exemplar shown, which is rank 0 with the most similar first
    cfg = _cfg(
        tmp_path,
        init_memory="webshop:E0",
        exemplar_order="similarity",
        agents=("rememberer", "rememberer@untrained", "rememberer[n_step=1]", "static", "heuristic"),
    )
    results = Runner(cfg, llm_factory=CopyFirstAdvice, echo=lambda m: None).run()
    rd = RunDir(cfg.out)
    records = rd.records()
    train = [r for r in records if r["phase"] == "train"]
    assert sorted(r["agent"] for r in train) == ["rememberer", "rememberer[n_step=1]"]
    test = [r for r in records if r["phase"] == "test"]
    assert sorted({r["agent"] for r in test}) == sorted(cfg.agents) and len(test) == 5 * 2
    # the untrained row is tested with the initial pool as it is
    from rlem_gym.agents import get_adapter

    matcher = get_adapter("webshop").make_matcher()
    untrained = ExperienceMemory.load(str(rd.memory_dir(0, "rememberer@untrained") / "memory"), matcher)
    assert sorted(r.key.observation for r in untrained.records()) == sorted(
        it["situation"].observation for it in pool_items("webshop:E0")
    )
    trained = ExperienceMemory.load(str(rd.memory_dir(0) / "memory"), matcher)
    assert len(trained) > len(untrained)  # training added the episode's new situations
    one_step = ExperienceMemory.load(str(rd.memory_dir(0, "rememberer[n_step=1]") / "memory"), matcher)
    assert one_step.n_step == 1 and trained.n_step is None
    # the table: one row per label, paired differences from the trained Rememberer
    assert [r["agent"] for r in results["rows"]] == list(cfg.agents)
    assert results["paired"]["reference"] == "rememberer"
    assert [r["agent"] for r in results["paired"]["rows"]] == list(cfg.agents[1:])
    assert all(r["score"]["n"] == 2 for r in results["paired"]["rows"])
    rates = {r["agent"]: r["encouraged_rate"]["mean"] for r in results["rows"]}
    assert rates["rememberer"] is not None and rates["rememberer@untrained"] is not None
    assert rates["static"] is None and rates["heuristic"] is None
    heuristic = [r for r in test if r["agent"] == "heuristic"]
    assert all(r["llm_calls"] == 0 and r["steps"] == 3 for r in heuristic)
    lines = list(iter_jsonl(rd.step_log_path))
    assert any(x["copied_encouraged"] for x in lines if x["agent"] == "rememberer@untrained")
    md = (Path(cfg.out) / "results.md").read_text()
    assert "## Paired differences from `rememberer`" in md and "rememberer[n_step=1]" in md
    assert "## `rememberer[n_step=1]` training (learning curve)" in md
    assert set(results["learning_curves"]) == {"rememberer", "rememberer[n_step=1]"}


def test_records_keep_how_the_episode_ended(tmp_path):
    """WebShop records carry the purchase and the reward's components (failure analysis); the
    oracle's purchase scores 1 on every component it has."""
    cfg = _cfg(tmp_path, agents=("oracle", "heuristic"), epochs=0, max_steps=15)
    Runner(cfg, llm_factory=CopyFirstAdvice, echo=lambda m: None).run()
    records = {(r["agent"], r["task_index"]): r for r in RunDir(cfg.out).records()}
    oracle = records[("oracle", 0)]
    assert oracle["return"] == pytest.approx(1.0)
    assert oracle["reward_details"]["r_type"] == 1.0 and oracle["purchased"]["asin"]
    heuristic = records[("heuristic", 0)]
    assert set(heuristic["reward_details"]) >= {"r_type", "r_att", "r_price"}
    json.dumps(heuristic)  # plain JSON
    # the failure analysis reads them: the oracle succeeds on both goals and its search shows the
    # goal's product; every heuristic episode gets exactly one outcome
    from rlem_gym.benchmarks.study.failures import analyse, markdown, webshop_outcome

    result = analyse(cfg.out)
    assert result["agents"]["oracle"]["outcomes"]["success"] == 2
    assert result["agents"]["oracle"]["flags"]["query misses the goal"] == 0
    assert sum(result["agents"]["heuristic"]["outcomes"].values()) == 2
    assert webshop_outcome(heuristic) in result["outcomes"]
    assert webshop_outcome({"return": 0.0, "actions": ["search[x]"]}) == "never bought"
    assert webshop_outcome({"return": 0.5, "purchased": {"asin": "a"}, "reward_details": {"r_type": 0.5}}) == (
        "wrong product type"
    )
    assert markdown(result).splitlines()[0].startswith("| Agent | N | success |")


def test_wikihow_failures_name_the_first_missed_subgoal(tmp_path, monkeypatch):
    """Real WikiHow episodes of the heuristic and the oracle (no LLM): the oracle succeeds on every
    task; each heuristic episode is classed by the first sub-goal it missed, read from the task chain."""
    from rlem_gym.benchmarks.study.failures import WIKIHOW_MISSED, analyse, wikihow_outcome
    from rlem_gym.envs.wikihow.tasks import task_set

    monkeypatch.setattr("rlem_gym.benchmarks.plots.make_plots", lambda *a, **k: [])  # plots are tested elsewhere
    cfg = _cfg(
        tmp_path, env="wikihow", agents=("heuristic", "oracle"), epochs=0, max_steps=15, test_split="microcanon70[0:4]"
    )
    Runner(cfg, llm_factory=CopyFirstAdvice, echo=lambda m: None).run()
    result = analyse(cfg.out)
    assert result["agents"]["oracle"]["outcomes"]["success"] == 4
    heuristic = [r for r in RunDir(cfg.out).records() if r["agent"] == "heuristic"]
    assert len(heuristic) == 4
    for rec in heuristic:
        outcome = wikihow_outcome(rec)
        task = next(t for t in task_set("microcanon70") if t.task_id == rec["task_label"])
        if rec["success"]:
            assert outcome == "success"
        else:
            assert rec["subgoals_done"] < len(task.subgoals)
            kind = task.subgoals[rec["subgoals_done"]].kind
            assert outcome == WIKIHOW_MISSED["next article" if kind == "article" and rec["subgoals_done"] > 1 else kind]
    assert sum(result["agents"]["heuristic"]["outcomes"].values()) == 4
    # hand-made records: the chain decides the name; unknown tasks fall back to the return
    task = next(t for t in task_set("microcanon70") if [g.kind for g in t.subgoals][2:3] == ["author"])
    assert wikihow_outcome({"task_label": task.task_id, "subgoals_done": 0, "return": 0.0}) == "no search"
    assert wikihow_outcome({"task_label": task.task_id, "subgoals_done": 1, "return": 1.0}) == "article not opened"
    assert wikihow_outcome({"task_label": task.task_id, "subgoals_done": 2, "return": 2.0}) == "author page not opened"
    if len(task.subgoals) > 3:
        assert wikihow_outcome({"task_label": task.task_id, "subgoals_done": 3, "return": 3.0}) == (
            "next article not opened"
        )
    assert wikihow_outcome({"task_label": "nope", "return": 1.0}) == "partial"
    assert wikihow_outcome({"task_label": task.task_id, "success": True}) == "success"
