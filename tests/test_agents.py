"""Agents with a scripted LLM: choice, fallback counting, advice rendering, memory update, ReAct, static."""

from __future__ import annotations

import numpy as np
import pytest

from rlem_gym.advice import AdviceLine
from rlem_gym.agents import AGENTS, ReActAgent, Rememberer, StaticExemplarAgent, get_adapter, make_agent
from rlem_gym.agents.rememberer import exemplar_from_record
from rlem_gym.llm.base import LLM, Completion
from rlem_gym.prompts import Exemplar, build_advice_prompt, prompt_budget
from rlem_gym.trajectory import Situation

WEBSHOP = get_adapter("webshop")
WIKIHOW = get_adapter("wikihow")
INSTRUCTION = "i need a long lasting deodorant for sensitive skin, and price lower than 40.00 dollars"


def webshop_info(page: str, clickables=(), search=False) -> dict:
    return {
        "instruction": INSTRUCTION,
        "page": page,
        "available_actions": {"has_search_bar": search, "clickables": list(clickables)},
    }


SEARCH = webshop_info("search", search=True)
RESULTS = webshop_info("results", ["back to search", "next >", "b078gwrc1j", "b078gtkvxy"])
ITEM = webshop_info("item", ["back to search", "< prev", "3 ounce", "description", "buy now"])


class ScriptedLLM(LLM):
    """Returns scripted replies in turn; tokens = characters // 4 (or a callable)."""

    name = "scripted"

    def __init__(self, replies, context_length: int = 4096):
        self.replies = list(replies)
        self.context_length = context_length
        self.prompts: list[str] = []
        self.prefixes: list[str] = []

    def generate(self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix=""):
        self.prompts.append(prompt)
        self.prefixes.append(response_prefix)
        text = self.replies[min(len(self.prompts) - 1, len(self.replies) - 1)]
        return Completion(text, self.count_tokens(prompt + response_prefix), self.count_tokens(text), 0.01, "stop")


# ------------------------------------------------------------------------------ choice/fallback
def test_first_valid_encouraged_action_is_taken():
    llm = ScriptedLLM(
        ["click[b0fake0000] -> 1.0 made up\nclick[B078GTKVXY] -> 0.8 matches\nDiscouraged:\nclick[next >] -> 0.0"]
    )
    agent = Rememberer(llm, None, "webshop")
    agent.reset("results page", RESULTS)
    assert agent.act("results page", RESULTS) == "click[b078gtkvxy]"
    step = agent.last_step
    assert not step.fallback and step.reason == "matches" and step.action == "click[b078gtkvxy]"
    # the answer cue starts the model's reply (response_prefix), it is not the end of the user prompt
    assert step.prompt == llm.prompts[0] and step.prompt.endswith("...\n\n") and llm.prefixes == ["Encouraged:\n"]
    assert step.raw_output == llm.replies[0] and step.retrieved == [] and step.retrieved_ids == []
    assert [a.action for a in step.parsed.discouraged] == ["click[next >]"]
    assert agent.stats.steps == 1 and agent.stats.llm_calls == 1 and agent.stats.fallbacks == 0
    assert step.prompt_tokens == llm.count_tokens(llm.prompts[0] + "Encouraged:\n") > 0


@pytest.mark.parametrize(
    "reply,why",
    [
        ("", "no action in the reply"),
        ("I think we should buy it!", "no action in the reply"),
        ("Discouraged:\nclick[b078gwrc1j] -> 0.0", "only Discouraged actions in the reply"),
        ("click[description] -> 1.0 another page's button", "no valid Encouraged action"),
    ],
)
def test_fallback_is_counted_and_explained(reply, why):
    agent = Rememberer(ScriptedLLM([reply]), None, "webshop", fallback="first_valid")
    agent.reset("results page", RESULTS)
    action = agent.act("results page", RESULTS)
    assert agent.last_step.fallback and agent.last_step.fallback_reason.startswith(why)
    assert agent.stats.fallbacks == 1 and agent.stats.fallback_rate == 1.0
    # first_valid: product links before navigation, and not what the model discouraged
    expected = "click[b078gtkvxy]" if "b078gwrc1j" in reply else "click[b078gwrc1j]"
    assert action == expected


def test_fallback_policies():
    agent = Rememberer(ScriptedLLM(["junk"]), None, "webshop", fallback="noop")
    agent.reset("p", SEARCH)
    assert agent.act("p", SEARCH) == WEBSHOP.noop_action
    agent = Rememberer(ScriptedLLM(["junk"]), None, "webshop", fallback="first_valid")
    agent.reset("p", SEARCH)
    assert agent.act("p", SEARCH) == "search[long lasting deodorant for sensitive skin]"
    draws = []
    for _ in range(2):
        agent = Rememberer(ScriptedLLM(["junk"]), None, "webshop", fallback="random_valid", seed=7)
        agent.reset("p", ITEM)
        draws.append([agent.act("p", ITEM) for _ in range(8)])
    assert draws[0] == draws[1] and all(WEBSHOP.is_valid(a, ITEM) for a in draws[0])
    assert len(set(draws[0])) > 1
    with pytest.raises(ValueError, match="fallback policy"):
        Rememberer(ScriptedLLM([""]), None, "webshop", fallback="guess")


def test_first_valid_fallback_avoids_recent_actions():
    agent = Rememberer(ScriptedLLM(["junk"]), None, "webshop")
    agent.reset("p", ITEM)
    first = agent.act("p", ITEM)
    agent.observe(first, 0.0, False, False, ITEM)
    second = agent.act("p", ITEM)
    assert (first, second) == ("click[3 ounce]", "click[description]")


def test_reseed_sets_the_seed_and_replays_the_generator():
    agent = Rememberer(ScriptedLLM(["junk"]), None, "webshop", fallback="random_valid", seed=7)
    agent.reset("p", ITEM)
    draws = [agent.act("p", ITEM) for _ in range(8)]
    agent.reseed(7)
    assert agent.seed == 7 and [agent.act("p", ITEM) for _ in range(8)] == draws
    agent.reseed(8)
    assert agent.seed == 8 and agent.rng.integers(1 << 30) == np.random.default_rng(8).integers(1 << 30)


def test_wikihow_choice_and_fallback():
    info = {
        "task_lines": ["Search an article to learn how to clean utensils."],
        "instruction": "",
        "clickable_ids": [0, 2],
        "input_ids": [2],
    }
    agent = Rememberer(
        ScriptedLLM(["CLICK(7) -> 1.0 not on screen\ninput(2, clean utensils) -> 1.0 search"]), None, "wikihow"
    )
    agent.reset("<screen/>", info)
    assert agent.act("<screen/>", info) == "INPUT(2, clean utensils)" and not agent.last_step.fallback
    agent = Rememberer(ScriptedLLM(["CLICK(99)"]), None, "wikihow")
    agent.reset("<screen/>", info)
    assert agent.act("<screen/>", info) == "INPUT(2, clean utensils)" and agent.last_step.fallback


# ---------------------------------------------------------------------------- prompt/rendering
def test_prompt_layout_webshop_and_wikihow():
    ex = Exemplar(
        Situation(
            "buy a hat",
            "[SEP] Back to Search [SEP] hat",
            last_actions=("search[hat]",),
            available_actions=("back to search", "b0hat00000"),
        ),
        encouraged=(AdviceLine("click[b0hat00000]", 1.0, "a hat"),),
        discouraged=(AdviceLine("click[back to search]", 0.0, "no"),),
    )
    query = Situation(INSTRUCTION, "WebShop [SEP] Search", available_actions=("search",))
    llm = ScriptedLLM([""])
    full = build_advice_prompt(
        llm, preamble=WEBSHOP.preamble, render_input=WEBSHOP.render_input, exemplars=[ex], query=query, budget=10_000
    ).text
    assert full.startswith(WEBSHOP.preamble)
    assert (
        "Example 1:\n\n---\nTask:\nbuy a hat\nLast 5 Actions:\n- search[hat]\nObservation: |\n  [SEP] Back to Search [SEP] hat\n"
        in full
    )
    assert (
        "Available Actions:\n- back to search\n- b0hat00000\n...\n\nEncouraged:\nclick[b0hat00000] -> 1.0 a hat\nDiscouraged:\nclick[back to search] -> 0.0 no"
        in full
    )
    assert full.endswith(
        "Now the new input:\n\n---\nTask:\n"
        + INSTRUCTION
        + "\nLast 5 Actions:\n\nObservation: |\n  WebShop [SEP] Search\nAvailable Actions:\n- search\n...\n\n"
    )
    nodis = build_advice_prompt(
        llm,
        preamble="P",
        render_input=WEBSHOP.render_input,
        exemplars=[ex],
        query=query,
        discouraged=False,
        budget=10_000,
    ).text
    assert "Discouraged" not in nodis and "click[b0hat00000] -> 1.0 a hat" in nodis
    wk = WIKIHOW.render_input(
        Situation("Search an article.", "<div/>", 'Access the article "How to X"', ("CLICK(1)",), 1.0, 2.0)
    )
    assert (
        wk
        == '```\nTask:\nSearch an article.\nLast 5 Actions:\nCLICK(1)\nScreen:\n<div/>\nInstruction:\nAccess the article "How to X"\nLast Reward:\n1.0\nTotal Reward:\n2.0\n---'
    )


@pytest.mark.parametrize("context_length,max_tokens", [(2048, 48), (700, 128), (300, 64)])
def test_prompt_budget_never_overflows_with_huge_observations(context_length, max_tokens):
    rng = np.random.default_rng(0)
    words = ["[SEP]", "size", "xx-large", "b07xyz1234", "$19.99", "cotton", "Buy Now", "é", "漢字"]
    huge = " ".join(words[int(i)] for i in rng.integers(0, len(words), 60_000))
    ex = Exemplar(
        Situation("task " * 50, huge, available_actions=("a",) * 20), (AdviceLine("click[a]", 1.0, "r" * 300),)
    )
    llm = ScriptedLLM(["click[b078gwrc1j]"], context_length=context_length)
    agent = Rememberer(llm, None, "webshop", max_tokens=max_tokens)
    agent.reset(huge, RESULTS)
    built = build_advice_prompt(
        llm,
        preamble=WEBSHOP.preamble,
        render_input=WEBSHOP.render_input,
        exemplars=[ex, ex],
        query=Situation(INSTRUCTION, huge + " END"),
        budget=prompt_budget(llm, max_tokens),
    )
    # the budget counts the "Encouraged:" cue the reply is forced to start with
    assert built.response_prefix == "Encouraged:\n"
    assert (
        built.tokens
        == llm.count_tokens(built.text) + llm.count_tokens("Encouraged:\n")
        <= context_length - max_tokens - 64
    )
    if context_length >= 700:
        assert "END" in built.text and not built.hard_truncated  # cut from the start: the end survives
    agent.act(huge, RESULTS)
    assert llm.count_tokens(llm.prompts[-1] + llm.prefixes[-1]) + max_tokens <= context_length


def test_exemplar_truncation_keeps_the_end_of_observations():
    obs = "START " + "filler " * 3000 + "THE-END"
    ex = Exemplar(Situation("t", obs), (AdviceLine("click[x]", 1.0, ""),))
    llm = ScriptedLLM([""], context_length=1200)
    built = build_advice_prompt(
        llm,
        preamble="P",
        render_input=WEBSHOP.render_input,
        exemplars=[ex],
        query=Situation("t", "short obs"),
        budget=1000,
    )
    assert built.tokens <= 1000 and built.truncated_observations == 1
    assert "THE-END" in built.text and "START" not in built.text and "short obs" in built.text


def test_last_resort_cut_still_reports_the_truncated_observation():
    # the task alone overflows the budget: every water-fill attempt fails and the last-resort cut runs
    llm = ScriptedLLM([""])
    query = Situation("task " * 400, "observation " * 100)
    built = build_advice_prompt(
        llm, preamble="P", render_input=WEBSHOP.render_input, exemplars=[], query=query, budget=200
    )
    assert built.hard_truncated and built.tokens <= 200
    assert built.truncated_observations == 1


# --------------------------------------------------------------------------------------- ReAct
def test_react_thinks_then_acts_and_counts_calls():
    llm = ScriptedLLM(["think[b078gtkvxy looks right.]", " click[B078GTKVXY]\nObservation: ..."])
    agent = ReActAgent(llm, "webshop", max_thinks=2)
    agent.reset("WebShop [SEP] Instruction: [SEP] deodorant [SEP] Search", SEARCH)
    assert agent.act("results", RESULTS) == "click[b078gtkvxy]"
    assert agent.stats.llm_calls == 2 and agent.stats.steps == 1 and agent.stats.fallbacks == 0
    assert agent.last_step.reason == "b078gtkvxy looks right." and not agent.last_step.fallback
    assert llm.prompts[1].endswith("Action: think[b078gtkvxy looks right.]\nObservation: OK.\n")
    assert llm.prefixes == ["Action:", "Action:"]  # the reply starts with the cue
    assert llm.prompts[0].startswith(WEBSHOP.react_preamble) and WEBSHOP.react_example() in llm.prompts[0]
    agent.observe("click[b078gtkvxy]", 0.0, False, False, ITEM)
    llm.replies = ["think[I keep thinking]"]
    action = agent.act("item page text", ITEM)
    assert agent.last_step.fallback and "thoughts" in agent.last_step.fallback_reason
    assert WEBSHOP.is_valid(action, ITEM) and agent.stats.llm_calls == 5 and agent.stats.fallbacks == 1
    assert "Observation:\nitem page text\nAction: think[I keep thinking]" in llm.prompts[-1]


def test_react_invalid_action_falls_back_and_budget_holds():
    llm = ScriptedLLM(["search[deodorant]"], context_length=900)
    agent = ReActAgent(llm, "webshop", max_tokens=64)
    agent.reset("x", RESULTS)
    action = agent.act("page " * 5000, RESULTS)  # search is not available on a results page
    assert agent.last_step.fallback and action == "click[b078gwrc1j]"
    assert llm.count_tokens(llm.prompts[-1]) <= 900 - 64 - 64


# ------------------------------------------------------------------------------ static/registry
def test_static_agent_uses_fixed_exemplars_and_never_learns():
    llm = ScriptedLLM(["click[b078gwrc1j] -> 1.0 ok"])
    agent = StaticExemplarAgent(llm, adapter="webshop").train()
    agent.reset("results", RESULTS)
    agent.act("results", RESULTS)
    agent.observe("click[b078gwrc1j]", 1.0, True, False, RESULTS)
    for ex in WEBSHOP.default_exemplars():
        assert WEBSHOP.render_input(ex.input) in llm.prompts[0]
    custom = Exemplar(Situation("custom task", "custom page"), (AdviceLine("click[zz]", 1.0, "custom"),))
    agent = StaticExemplarAgent(llm, [custom], adapter="webshop")
    agent.reset("results", RESULTS)
    agent.act("results", RESULTS)
    assert "custom page" in llm.prompts[-1] and "click[zz] -> 1.0 custom" in llm.prompts[-1]
    assert agent.memory is None and agent.last_step.retrieved_ids == []
    with pytest.raises(TypeError, match="Exemplar"):
        StaticExemplarAgent(llm, ["not an exemplar"])


def test_registry_and_make_agent():
    assert set(AGENTS) == {"rememberer", "react", "static", "heuristic", "oracle", "random"}
    llm = ScriptedLLM([""])
    assert isinstance(make_agent("react", llm, "rlem_gym/WikiHow-v0"), ReActAgent)
    assert make_agent("static", llm, "wikihow").adapter.name == "wikihow"
    with pytest.raises(ValueError, match="unknown agent"):
        make_agent("dqn", llm, "webshop")
    with pytest.raises(ValueError, match="no adapter"):
        make_agent("react", llm, "alfworld")
    with pytest.raises(ValueError, match="no memory"):
        make_agent("react", llm, "webshop", n_step=1)


def test_default_exemplars_are_valid_advice():
    for adapter in (WEBSHOP, WIKIHOW):
        exemplars = adapter.default_exemplars()
        assert len(exemplars) >= 2
        for ex in exemplars:
            assert ex.encouraged and all(
                adapter.canonicalize(a.action) == a.action for a in ex.encouraged + ex.discouraged
            )


# ------------------------------------------------------------------------ memory (real, no LLM)
TASK_LINES = ["Search an article to learn how to clean utensils.", 'Then, access the article "How to Clean Utensils"']
SCREENS = ["<home/>", "<results/>", "<article/>"]


def wikihow_info(instruction: str = "") -> dict:
    return {"task_lines": TASK_LINES, "instruction": instruction, "clickable_ids": [2, 3], "input_ids": [2]}


def wikihow_memory(**kw):
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WikiHowMatcher

    return ExperienceMemory(WikiHowMatcher(lambda s: s), **kw)


REPLIES = [
    "INPUT(2, clean utensils) -> 1.0 type the key words\nDiscouraged:\nSCROLL(DOWN) -> 0.0 no",
    "CLICK(3) -> 1.0 the article",
    "SCROLL(DOWN) -> 0.5 read on",
]
REWARDS = [0.0, 1.0, 1.0]


def run_scripted_episode(agent, instructions=("", "", 'Access the article "How to Clean Utensils"')):
    agent.reset(SCREENS[0], wikihow_info())
    actions = []
    for t, screen in enumerate(SCREENS):
        info = wikihow_info(instructions[t])
        action = agent.act(screen, info)
        actions.append(action)
        agent.observe(action, REWARDS[t], t == len(SCREENS) - 1, False, info)
    return actions


def test_train_mode_updates_memory_with_monte_carlo_returns_and_reasons():
    memory = wikihow_memory()
    agent = Rememberer(ScriptedLLM(REPLIES), memory, "wikihow").train()
    actions = run_scripted_episode(agent)
    assert actions == ["INPUT(2, clean utensils)", "CLICK(3)", "SCROLL(DOWN)"]
    assert len(memory) == 3 and agent.stats.episodes == 1
    task = "\n".join(TASK_LINES)
    from rlem_gym.memory import MemoryKey

    expected = {SCREENS[0]: 2.0, SCREENS[1]: 2.0, SCREENS[2]: 1.0}  # full return, gamma = 1
    instructions = ["", "", 'Access the article "How to Clean Utensils"']
    for t, screen in enumerate(SCREENS):
        rec = memory.get(MemoryKey(task, screen, instructions[t]))
        assert rec is not None
        ((action, stats),) = rec.actions.items()
        assert action == actions[t] and stats.q == pytest.approx(expected[screen]) and stats.last_reward == REWARDS[t]
        assert stats.reason == ["type the key words", "the article", "read on"][t]
        assert rec.situation.last_actions == tuple(actions[:t]) and rec.situation.total_reward == sum(REWARDS[:t])
    steps = agent.episode_steps
    assert [s.reward for s in steps] == REWARDS and steps[2].situation.last_reward == 1.0


def test_second_episode_retrieves_first_episode_records():
    memory = wikihow_memory()
    llm = ScriptedLLM(REPLIES)
    agent = Rememberer(llm, memory, "wikihow", k=2).train()
    run_scripted_episode(agent)
    ids = {r.id for r in memory.records()}
    llm.prompts.clear()
    agent.reset(SCREENS[0], wikihow_info())
    agent.act(SCREENS[0], wikihow_info())
    step = agent.last_step
    assert len(step.retrieved_ids) == 2 and set(step.retrieved_ids) <= ids
    assert step.retrieved[0].record.key.observation == SCREENS[0]  # the exact same situation ranks first
    assert "Encouraged:\nINPUT(2, clean utensils) -> 2.0 type the key words\nDiscouraged:\n" in step.prompt
    assert step.prompt.index("Example 1:") < step.prompt.index("Now the new input:")


def test_fallback_label_is_not_stored_as_the_models_reason():
    memory = wikihow_memory()
    agent = Rememberer(ScriptedLLM(["I do not know."]), memory, "wikihow").train()
    info = wikihow_info()
    agent.reset(SCREENS[0], info)
    action = agent.act(SCREENS[0], info)
    assert agent.last_step.fallback and agent.last_step.reason == "fallback (first_valid)"
    agent.observe(action, 1.0, True, False, info)
    assert [s.reason for s in agent.episode_steps] == [""]
    ((stats,),) = [list(r.actions.values()) for r in memory.records()]
    assert stats.reason == ""


def test_retrieved_ids_name_only_the_exemplars_left_in_the_prompt():
    long_task = ["Search an article to learn how to clean utensils.", "Then, check the reference list " + "very " * 600]
    memory = wikihow_memory()
    llm = ScriptedLLM(REPLIES)
    agent = Rememberer(llm, memory, "wikihow", k=2).train()
    agent.reset(SCREENS[0], {"task_lines": long_task})
    for t, screen in enumerate(SCREENS):
        info = {"task_lines": long_task, "instruction": "", "clickable_ids": [2, 3], "input_ids": [2]}
        agent.observe(agent.act(screen, info), REWARDS[t], t == len(SCREENS) - 1, False, info)
    # each exemplar repeats the ~760-token task: in this window the query and one exemplar fit, two do not
    llm.context_length = 2300
    agent.reset(SCREENS[0], info)
    agent.act(SCREENS[0], info)
    step = agent.last_step
    assert len(step.retrieved) == 2 and "Example 1:" in step.prompt and "Example 2:" not in step.prompt
    assert step.retrieved_ids == [step.retrieved[0].record.id]


def test_eval_mode_never_updates():
    memory = wikihow_memory()
    agent = Rememberer(ScriptedLLM(REPLIES), memory, "wikihow").eval()
    run_scripted_episode(agent)
    assert len(memory) == 0 and agent.stats.episodes == 1


def test_one_step_q_passes_through_make_agent():
    agent = make_agent("rememberer", ScriptedLLM(REPLIES), WIKIHOW, memory=wikihow_memory(n_step=1))
    assert agent.memory.n_step == 1
    run_scripted_episode(agent.train())
    qs = [q.q for r in agent.memory.records() for q in r.actions.values()]
    assert qs == [0.0, 1.0, 1.0]  # one-step: r_t + max Q(next key, unseen before this episode) = r_t
    with pytest.raises(ValueError, match="only when make_agent builds"):
        make_agent("rememberer", ScriptedLLM(REPLIES), WIKIHOW, memory=wikihow_memory(), n_step=1)


def test_success_replay_agent_stores_only_successful_episodes_and_shows_no_discouraged_advice():
    agent = make_agent(
        "rememberer", ScriptedLLM(REPLIES * 2), WIKIHOW, learning="success_replay", discouraged=False
    ).train()
    failed = [0.0, 0.0, 0.0]
    agent.reset(SCREENS[0], wikihow_info())
    for t, screen in enumerate(SCREENS):  # the same actions, return 0: nothing is stored
        info = wikihow_info()
        agent.observe(agent.act(screen, info), failed[t], t == len(SCREENS) - 1, False, info)
    assert len(agent.memory) == 0 and agent.stats.episodes == 1
    run_scripted_episode(agent)  # return 2.0: every step is kept at Q = 1.0
    assert len(agent.memory) == 3
    assert [q.q for r in agent.memory.records() for q in r.actions.values()] == [1.0, 1.0, 1.0]
    agent.eval().reset(SCREENS[0], wikihow_info())
    agent.act(SCREENS[0], wikihow_info())
    prompt = agent.last_step.prompt
    assert "INPUT(2, clean utensils) -> 1.0 type the key words" in prompt
    assert "Discouraged:\n" not in prompt.split("Now the new input:")[0]


def test_exemplar_advice_deterministic_and_random_modes():
    memory = wikihow_memory()
    from rlem_gym.trajectory import Step

    memory.update(
        "t", [Step.of('<a id="5" clickable="true"/>', "CLICK(5)", -1.0, "bad"), Step.of("<b/>", "GOBACK", 0.0, "meh")]
    )
    memory.update("t", [Step.of('<a id="5" clickable="true"/>', "SCROLL(UP)", 0.0, "zero")])
    rec = memory.records()[0]
    det = exemplar_from_record(rec, WIKIHOW)
    assert det.encouraged == () and [a.action for a in det.discouraged] == ["SCROLL(UP)", "CLICK(5)"]
    assert det.record_id == rec.id and det.input.observation == rec.key.observation
    rnd = [exemplar_from_record(rec, WIKIHOW, random_advice=True, rng=np.random.default_rng(3)) for _ in range(2)]
    assert rnd[0] == rnd[1]  # seeded
    (invented,) = rnd[0].encouraged
    assert 0.0 <= invented.q < 0.5 and invented.action not in rec.actions and WIKIHOW.canonicalize(invented.action)
    memory.update("u", [Step.of("<c/>", "CLICK(1)", 1.0, "good")])
    good = memory.records()[-1]
    det = exemplar_from_record(good, WIKIHOW)
    assert [(a.action, a.q) for a in det.encouraged] == [("CLICK(1)", 1.0)] and det.discouraged == ()
    rnd = exemplar_from_record(good, WIKIHOW, random_advice=True, rng=np.random.default_rng(0))
    assert len(rnd.discouraged) == 1 and rnd.discouraged[0].q == 0.0 and rnd.discouraged[0].action != "CLICK(1)"


def test_advice_drawn_once_per_episode_repeats_a_records_exemplar_until_the_next_episode():
    from rlem_gym.trajectory import Step

    def exemplar_texts(advice_draw, episodes=2, steps=4):
        memory = wikihow_memory()
        memory.update("t", [Step.of('<a id="5" clickable="true"/>', "CLICK(5)", -1.0, "bad")])
        agent = Rememberer(
            ScriptedLLM(["GOBACK -> 1.0 go"]),
            memory,
            WIKIHOW,
            k=1,
            seed=0,
            action_decoding="free",
            advice_draw=advice_draw,
        )
        agent.eval()
        texts = []
        for _ in range(episodes):
            agent.reset('<a id="5" clickable="true"/>', {})
            texts.append(
                [agent.act('<a id="5" clickable="true"/>', {}) and agent.last_step.prompt for _ in range(steps)]
            )
        return texts

    per_episode = exemplar_texts("episode")
    assert all(len(set(ep)) == 1 for ep in per_episode)  # the same prompt at every step of an episode
    assert per_episode[0][0] != per_episode[1][0]  # redrawn in the next episode
    per_call = exemplar_texts("call")
    assert len(set(per_call[0])) > 1  # the official rendering draws again at every step
    with pytest.raises(ValueError, match="advice_draw"):
        Rememberer(ScriptedLLM([""]), None, WIKIHOW, advice_draw="step")


def test_exploring_training_steps_take_a_random_valid_action_and_store_the_models_reason_for_it():
    memory = wikihow_memory()
    llm = ScriptedLLM([" -> 0.3 worth a try"])
    agent = Rememberer(llm, memory, "wikihow", explore=1.0, seed=5).train()
    actions = run_scripted_episode(agent)
    candidates = set(get_adapter("wikihow").fallback_candidates(SCREENS[0], wikihow_info()))
    assert set(actions) <= candidates and agent.last_step.explored and not agent.last_step.fallback
    # the model was asked only for the reason: its reply was forced to start with the drawn action
    assert [p.rsplit("\n", 1)[-1] for p in llm.prefixes] == actions
    assert all(s.reason == "worth a try" for s in agent.episode_steps) and len(memory) == 3
    # the draws repeat with the seed; in eval mode nothing is explored
    again = Rememberer(ScriptedLLM([" -> 0.3 worth a try"]), wikihow_memory(), "wikihow", explore=1.0, seed=5).train()
    assert run_scripted_episode(again) == actions
    frozen = Rememberer(ScriptedLLM(REPLIES), wikihow_memory(), "wikihow", explore=1.0).eval()
    assert run_scripted_episode(frozen) == ["INPUT(2, clean utensils)", "CLICK(3)", "SCROLL(DOWN)"]
    assert not frozen.last_step.explored
    with pytest.raises(ValueError, match="probability"):
        Rememberer(llm, memory, "wikihow", explore=1.5)
    from rlem_gym.agents.variants import parse_variant

    assert parse_variant("rememberer[explore=0.2]").agent_settings == {"explore": 0.2}


def test_compact_wikihow_screen_is_an_adapter_option():
    """``screen="compact"`` changes what prompts show, not what the memory keys on."""
    from rlem_gym.envs.wikihow.env import WikiHowEnv

    compact = get_adapter("wikihow", screen="compact")
    obs, info = WikiHowEnv().reset(seed=0)
    assert compact.memory_key(obs, info) == WIKIHOW.memory_key(obs, info)
    shown = compact.render_input(Situation(task="t", observation=obs, instruction="i"))
    assert "clickable=" not in shown and "] button: Open navigation drawer" in shown
    assert 'clickable="true"' in WIKIHOW.render_input(Situation(task="t", observation=obs, instruction="i"))
    assert "clickable=" not in compact.react_example() and "clickable=" in WIKIHOW.react_example()
    assert "clickable=" not in compact.react_observation(obs, info, first=True)

    llm = ScriptedLLM(["CLICK(0)"])
    agent = make_agent("static", llm, "wikihow", screen="compact", action_decoding="free")
    assert agent.adapter.screen == "compact"
    agent.reset(obs, info)
    agent.act(obs, info)
    assert "clickable=" not in agent.last_step.prompt and "] button: Open navigation drawer" in agent.last_step.prompt
    assert make_agent("react", llm, "wikihow").adapter.screen == "full"
    with pytest.raises(ValueError, match="webshop adapter has no option screen"):
        make_agent("static", llm, "webshop", screen="compact")
    with pytest.raises(ValueError, match="full, compact"):
        get_adapter("wikihow", screen="tiny")
    with pytest.raises(ValueError, match="env name only"):
        get_adapter(WIKIHOW, screen="compact")
