"""Constrained action decoding: the constraint, the token mask, both local backends and the agents."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlem_gym.agents import make_agent
from rlem_gym.agents.adapters import get_adapter
from rlem_gym.llm.base import LLM, Completion
from rlem_gym.llm.constraint import ActionConstraint, check_constraint, merge
from rlem_gym.llm.vocab_index import VocabIndex

WEB = ActionConstraint(
    ("click[blue shirt]", "click[back to search]", "click[b]", "click[b2]"), (("search[", "]"),), forbid="["
)
WIKI = ActionConstraint(("CLICK(3)", "CLICK(12)", "GOBACK"), (("INPUT(2, ", ")"),))


# ------------------------------------------------------------------------------------ the constraint
@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("click[blue shirt]", True),
        ("click[blue]", False),
        ("search[red shoes]", True),
        ("search[]", False),
        ("search[a[b]", False),
        ("search[a\nb]", False),
        ("search[a]]", False),
        ("click[b2]", True),
        (" click[b]", False),
    ],
)
def test_matches(text: str, ok: bool) -> None:
    assert WEB.matches(text) is ok
    assert bool(re.fullmatch(WEB.regex(), text)) is ok


def test_prefix_and_complete() -> None:
    assert WEB.allows_prefix("click[bl") and WEB.allows_prefix("search[red sh") and WEB.allows_prefix("")
    assert not WEB.allows_prefix("click[x") and not WEB.allows_prefix("search[a[")
    assert WEB.matches("click[b") is False
    assert WEB.matches("click[b]") and WEB.complete("click[b]")  # no allowed action extends "click[b]"
    assert WIKI.allows_prefix("CLICK(1") and not WIKI.complete("CLICK(1")  # CLICK(12) still possible
    assert WIKI.matches("INPUT(2, how to cook)") and not WIKI.matches("INPUT(3, x)")


def test_gbnf_lists_every_alternative() -> None:
    grammar = WEB.gbnf()
    assert grammar.startswith("root ::= ")
    for lit in WEB.literals:
        assert f'"{lit}"' in grammar
    assert '"search[" free0 "]"' in grammar and "free0 ::= [^\\n\\r\\]\\[]{1,120}" in grammar


def test_prefixed_merge_and_errors() -> None:
    spaced = merge([WIKI, ActionConstraint((), (("think[", "]"),))]).prefixed(" ")
    assert spaced.matches(" CLICK(3)") and spaced.matches(" think[look for it]") and not spaced.matches("CLICK(3)")
    with pytest.raises(ValueError, match="allows no action"):
        check_constraint(ActionConstraint())
    with pytest.raises(TypeError):
        check_constraint("click[x]")
    with pytest.raises(ValueError, match="one line"):
        ActionConstraint(("a\nb",))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="clik[]bue shtrac()INPUT2, \n", max_size=30))
def test_regex_agrees_with_matches(text: str) -> None:
    for c in (WEB, WIKI):
        assert bool(re.fullmatch(c.regex(), text)) == c.matches(text)


# ------------------------------------------------------------------------------------ token masks
def _greedy(index: VocabIndex, constraint: ActionConstraint, prefer: list[str]) -> str:
    """Walk the mask, taking the ``prefer`` tokens in order while they are allowed (else the first allowed)."""
    text = ""
    prefer = list(prefer)
    for _ in range(50):
        if constraint.complete(text):
            return text
        mask = index.allowed(constraint, text)
        assert mask.any(), f"nothing allowed after {text!r}"
        allowed = [index.texts[i] for i in range(index.size) if mask[i]]
        for t in allowed:  # every allowed token keeps the text a prefix of an allowed action
            assert constraint.allows_prefix(text + t), (text, t)
        pick = prefer.pop(0) if prefer and prefer[0] in allowed else allowed[0]
        text += pick
        if constraint.matches(text) and pick in ("]", ")"):
            return text
    return text


def test_vocab_index_masks_to_allowed_actions() -> None:
    vocab = [
        "click",
        "[",
        "blue",
        " shirt",
        "]",
        "search",
        "search[",
        "[red",
        " shoes",
        "red",
        "b",
        "2",
        "x",
        "\n",
        "]]",
        "] ok",
        None,
        "CLICK",
        "(",
        "3",
        ")",
        "GO",
        "BACK",
        "INPUT",
        "2, ",
        " how",
        "12",
    ]
    index = VocabIndex(vocab)
    assert _greedy(index, WEB, ["search[", "red", " shoes", "]"]) == "search[red shoes]"
    assert _greedy(index, WEB, ["search", "[red", "]"]) == "search[red]"  # a token across the template's prefix
    assert _greedy(index, WEB, ["click", "[", "blue", " shirt", "]"]) == "click[blue shirt]"
    mask = index.allowed(WEB, "search[red")
    assert mask[vocab.index("]")] and mask[vocab.index(" shoes")]
    assert not mask[vocab.index("\n")] and not mask[vocab.index("]]")] and not mask[vocab.index("[")]
    assert _greedy(index, WIKI, ["GO", "BACK"]) == "GOBACK"
    assert _greedy(index, WIKI, ["CLICK", "(", "12", ")"]) == "CLICK(12)"


# ------------------------------------------------------------------------------------ adapters
def _page(env_id: str, **kw):
    env = gym.make(env_id, **kw)
    obs, info = env.reset(seed=0)
    return env, obs, info


@pytest.mark.parametrize(("env_id", "name"), [("rlem_gym/WebShop-v0", "webshop"), ("rlem_gym/WikiHow-v0", "wikihow")])
def test_adapter_constraint_holds_only_valid_actions(env_id: str, name: str) -> None:
    adapter = get_adapter(name)
    env, obs, info = _page(env_id)
    for _ in range(4):
        constraint = adapter.action_constraint(info)
        assert not constraint.empty
        for lit in constraint.literals:
            assert adapter.is_valid_canonical(lit, info) and adapter.extract_actions(lit) == [lit]
        for prefix, suffix in constraint.templates:
            action = f"{prefix}warm winter socks{suffix}"
            assert constraint.matches(action)
            assert adapter.extract_actions(action) == [action] and adapter.is_valid_canonical(action, info)
        action = (constraint.literals or (f"{constraint.templates[0][0]}socks{constraint.templates[0][1]}",))[0]
        obs, _, term, trunc, info = env.step(action)
        assert not info.get("last_action_error"), (action, info.get("last_action_error"))
        if term or trunc:
            break
    env.close()


# ------------------------------------------------------------------------------------ agents, scripted LLM
class ScriptedLLM(LLM):
    """Replies from a script; records each call's keyword arguments. Constraints are honoured by the script."""

    name = "scripted"

    def __init__(self, replies: list[str], supports_constraint: bool = True) -> None:
        self.replies = list(replies)
        self.calls: list[dict] = []
        self.supports_constraint = supports_constraint

    def generate(
        self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix="", constraint=None
    ) -> Completion:
        self.calls.append({"response_prefix": response_prefix, "constraint": constraint, "stop": stop})
        return Completion(self.replies.pop(0), 10, 3, 0.0, "stop")


def test_constrained_rememberer_makes_two_calls_in_training_one_in_eval() -> None:
    env, obs, info = _page("rlem_gym/WebShop-v0")
    llm = ScriptedLLM(["search[red shoes]", " -> 0.5 The instruction asks for red shoes.", "search[blue]"])
    agent = make_agent("rememberer", llm, "webshop", action_decoding="constrained").train()
    agent.reset(obs, info)
    assert agent.act(obs, info) == "search[red shoes]"
    first, second = llm.calls
    assert isinstance(first["constraint"], ActionConstraint) and first["constraint"].matches("search[red shoes]")
    assert second["constraint"] is None and second["response_prefix"].endswith("Encouraged:\nsearch[red shoes]")
    assert agent.last_step.reason == "The instruction asks for red shoes." and not agent.last_step.fallback
    assert agent.stats.llm_calls == 2
    agent.eval()
    agent.act(obs, info)
    assert len(llm.calls) == 3 and llm.calls[2]["constraint"] is not None  # eval: the action only
    env.close()


def test_constrained_react_allows_think_then_acts() -> None:
    env, obs, info = _page("rlem_gym/WikiHow-v0")
    llm = ScriptedLLM([" think[I should search first]", " GOBACK"])
    agent = make_agent("react", llm, "wikihow", action_decoding="constrained", max_thinks=1)
    agent.reset(obs, info)
    assert agent.act(obs, info) == "GOBACK"
    assert llm.calls[0]["constraint"].matches(" think[x]") and not llm.calls[1]["constraint"].matches(" think[x]")
    assert agent.last_step.reason == "I should search first"
    env.close()


def test_backend_without_constraints_warns_and_decodes_freely() -> None:
    env, obs, info = _page("rlem_gym/WebShop-v0")
    llm = ScriptedLLM(["search[shoes] -> 0.3 ok"], supports_constraint=False)
    agent = make_agent("static", llm, "webshop", action_decoding="constrained")
    agent.reset(obs, info)
    with pytest.warns(RuntimeWarning, match="cannot constrain"):
        assert agent.act(obs, info) == "search[shoes]"
    assert llm.calls[0]["constraint"] is None and agent.effective_action_decoding == "free"
    env.close()


def test_free_mode_passes_no_constraint() -> None:
    env, obs, info = _page("rlem_gym/WebShop-v0")
    llm = ScriptedLLM(["search[shoes] -> 0.3 ok"])
    assert make_agent("static", llm, "webshop").action_decoding == "constrained"  # the default
    agent = make_agent("static", llm, "webshop", action_decoding="free")
    agent.reset(obs, info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert agent.act(obs, info) == "search[shoes]"
    assert llm.calls[0]["constraint"] is None and llm.calls[0]["stop"] == agent.stop
    with pytest.raises(ValueError, match="action_decoding"):
        make_agent("static", llm, "webshop", action_decoding="grammar")
    env.close()


# ------------------------------------------------------------------------------------ real shipped model
def _episode(agent, env_id: str, steps: int, **env_kw) -> list:
    env = gym.make(env_id, max_episode_steps=steps, **env_kw)
    obs, info = env.reset(seed=0)
    agent.reset(obs, info)
    out = []
    while True:
        action = agent.act(obs, info)
        step = agent.last_step
        obs, reward, term, trunc, info = env.step(action)
        out.append((action, step, info.get("last_action_error")))
        agent.observe(action, reward, term, trunc, info)
        if term or trunc:
            break
    env.close()
    return out


BACKENDS = [pytest.param("smollm2", id="hf"), pytest.param("smollm2-gguf", id="llamacpp")]


@pytest.fixture
def shipped_llm_factory(request):
    """The shipped SmolLM2 by spec, from the session fixtures (llama.cpp skips without its extra)."""
    return lambda spec: request.getfixturevalue("hf_llm" if spec == "smollm2" else "gguf_llm")


@pytest.mark.parametrize("spec", BACKENDS)
def test_real_model_constrained_generate_returns_one_allowed_action(spec: str, shipped_llm_factory) -> None:
    llm = shipped_llm_factory(spec)
    prompt = "You shop online. Page: [Search]. Instruction: buy red running shoes. Write your next action."
    for constraint in (WEB, WIKI):
        out = llm.generate(prompt, response_prefix="Encouraged:\n", constraint=constraint, max_tokens=48)
        assert constraint.matches(out.text), out.text
        assert out.completion_tokens >= 1


WEBSHOP, WIKIHOW = ("rlem_gym/WebShop-v0", "webshop"), ("rlem_gym/WikiHow-v0", "wikihow")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "env", "agent_name"),
    [
        # the Rememberer on both envs and both local backends; each baseline once (the constraint code is shared)
        ("smollm2", WEBSHOP, "rememberer"),
        ("smollm2", WIKIHOW, "rememberer"),
        ("smollm2-gguf", WEBSHOP, "rememberer"),
        ("smollm2-gguf", WIKIHOW, "rememberer"),
        ("smollm2", WIKIHOW, "react"),
        ("smollm2-gguf", WEBSHOP, "static"),
    ],
)
def test_real_model_constrained_episode_takes_only_valid_actions(spec, env, agent_name, shipped_llm_factory):
    env_id, name = env
    llm = shipped_llm_factory(spec)
    agent = make_agent(agent_name, llm, name, action_decoding="constrained", max_tokens=24)
    if agent_name == "rememberer":
        agent.train()  # the full reply: the action, then the free reason, which must still parse
    steps = _episode(agent, env_id, 3)
    for action, step, error in steps:
        assert not step.fallback, (action, step.fallback_reason, step.raw_output)
        assert error in (None, ""), (action, error)
    if agent_name == "rememberer":
        assert all(step.parsed.encouraged and step.parsed.encouraged[0].action == a for a, step, _ in steps)
        assert len(agent.memory) > 0  # the episode was stored


def test_llamacpp_grammar_engine_agrees_with_mask_engine() -> None:
    """Both llama.cpp engines (GBNF grammar, logits mask) give an allowed action; greedy, they agree."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install rlem-gym[llamacpp])")
    from rlem_gym.llm import make_llm

    prompt = "Task: learn how to hide gauges. Screen: a search box (id 2). Write your next action."
    texts = []
    for engine in ("mask", "grammar"):
        llm = make_llm("smollm2-gguf", constraint_engine=engine)
        try:
            out = llm.generate(prompt, response_prefix="Encouraged:\n", constraint=WIKI, max_tokens=48)
        finally:
            llm.close()
        assert WIKI.matches(out.text), (engine, out.text)
        texts.append(out.text)
    assert texts[0] == texts[1]
    with pytest.raises(ValueError, match="constraint_engine"):
        make_llm("smollm2-gguf", constraint_engine="regex")


def test_an_interrupt_inside_the_llamacpp_logits_processor_is_not_lost(gguf_llm, monkeypatch) -> None:
    """llama.cpp runs the mask processor inside a C callback, which would print and drop a
    KeyboardInterrupt (Ctrl-C, or SIGTERM in the CLI): the backend re-raises it after the call,
    and the next call is unaffected."""
    from rlem_gym.llm.vocab_index import VocabIndex

    if getattr(gguf_llm, "constraint_engine", "mask") != "mask":
        pytest.skip("the default llama.cpp engine is not the mask processor")
    prompt = "Task: learn how to hide gauges. Screen: a search box (id 2). Write your next action."
    real = VocabIndex.constrain
    calls = []

    def interrupted(self, scores, constraint, text, eos):
        calls.append(text)
        if len(calls) == 2:
            raise KeyboardInterrupt("signal 15")
        return real(self, scores, constraint, text, eos)

    monkeypatch.setattr(VocabIndex, "constrain", interrupted)
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        gguf_llm.generate(prompt, response_prefix="Encouraged:\n", constraint=WIKI, max_tokens=48)
    assert len(calls) == 2  # generation stopped at the interrupted token
    monkeypatch.setattr(VocabIndex, "constrain", real)
    out = gguf_llm.generate(prompt, response_prefix="Encouraged:\n", constraint=WIKI, max_tokens=48)
    assert WIKI.matches(out.text), out.text


# ------------------------------------------------------------------------------------ scored action decoding
class ScoringLLM(ScriptedLLM):
    """A scripted LLM that also scores: each continuation's log-likelihood is looked up in ``likes`` (default -9)."""

    supports_scoring = True

    def __init__(self, replies: list[str], likes: dict[str, float]) -> None:
        super().__init__(replies)
        self.likes = likes
        self.scored: list[tuple[str, ...]] = []

    def score(self, prompt, continuations, *, response_prefix=""):
        from rlem_gym.llm.base import Scores

        self.scored.append(tuple(continuations))
        return Scores(tuple(self.likes.get(c, -9.0) for c in continuations), 10, len(continuations), 0.0)


def test_scored_decoding_takes_the_most_likely_whole_action_and_decodes_free_text_slots() -> None:
    env, obs, info = _page("rlem_gym/WebShop-v0")
    llm = ScoringLLM(["search[red shoes]", " -> 0.4 ok", " -> 0.9 the first result"], {})
    agent = make_agent("rememberer", llm, "webshop", action_decoding="scored").train()
    agent.reset(obs, info)
    # the search page has a free-text slot: decoded under the constraint, as in constrained mode
    assert agent.act(obs, info) == "search[red shoes]" and llm.scored == []
    obs, _, _, _, info = env.step("search[red shoes]")
    clicks = [f"click[{c}]" for c in info["available_actions"]["clickables"]]
    llm.likes = {clicks[-1]: -1.0, clicks[0]: -2.0}
    assert agent.act(obs, info) == clicks[-1]  # every valid click scored; the most likely taken
    assert set(llm.scored[0]) == set(agent.adapter.action_constraint(info).literals)
    assert llm.calls[-1]["response_prefix"].endswith("Encouraged:\n" + clicks[-1])  # the reason continues it
    assert agent.last_step.reason == "the first result" and agent.effective_action_decoding == "scored"
    env.close()


def test_scored_decoding_without_a_scoring_backend_warns_and_decodes_token_by_token() -> None:
    env, obs, info = _page("rlem_gym/WebShop-v0")
    obs, _, _, _, info = env.step("search[shoes]")
    llm = ScriptedLLM([" click[back to search]"])
    agent = make_agent("static", llm, "webshop", action_decoding="scored")
    agent.reset(obs, info)
    with pytest.warns(RuntimeWarning, match="cannot score"):
        agent.act(obs, info)
    assert llm.calls[0]["constraint"] is not None and agent.effective_action_decoding == "constrained"
    env.close()


def test_llamacpp_scores_are_the_continuations_log_likelihoods(gguf_llm) -> None:
    """Checked against llama.cpp's own per-token logits of the whole text (a context that keeps them all)."""
    import numpy as np
    from llama_cpp import Llama

    from rlem_gym.llm.llamacpp import log_softmax

    prompt = "Instruction: buy a black medium t-shirt. Options: black, white, medium. Click one."
    cands = ["click[black]", "click[white]", "click[medium]", "click[back to search]", "click[black]x"]
    got = gguf_llm.score(prompt, cands, response_prefix="Encouraged:\n")
    again = gguf_llm.score(prompt, cands, response_prefix="Encouraged:\n")  # from the live context
    text, _ = gguf_llm.prompt_text(prompt, "Encouraged:\n")
    ids = gguf_llm._tokens(text)
    ref = Llama(model_path=gguf_llm._llm.model_path, n_ctx=512, logits_all=True, verbose=False)
    try:
        want = []
        for c in cands:
            whole = gguf_llm._tokens(text + c)
            ref.reset()
            ref.eval(whole)
            rows = log_softmax(np.asarray(ref.scores[len(ids) - 1 : len(whole) - 1]))
            want.append(sum(rows[j][t] for j, t in enumerate(whole[len(ids) :])))
    finally:
        ref.close()
    assert np.allclose(got.logprobs, want, atol=0.15) and np.allclose(again.logprobs, want, atol=0.15)
    assert got.logprobs[4] < got.logprobs[0]  # a longer continuation that extends another is less likely
    assert got.prompt_tokens == len(ids) and again.cached_tokens == len(ids) - 1
    greedy = gguf_llm.generate(prompt, response_prefix="Encouraged:\n", constraint=ActionConstraint.of(cands[:4]))
    assert greedy.text in cands[:4]
