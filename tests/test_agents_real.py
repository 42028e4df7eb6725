"""Agents against the real env, the real tokenizer and the real shipped model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import importlib.util
from collections import defaultdict

import gymnasium as gym
import pytest
from gymnasium.wrappers import RecordEpisodeStatistics

import rlem_gym  # noqa: F401  (registers the env ids)
from rlem_gym.agents import ReActAgent, Rememberer, StaticExemplarAgent, get_adapter
from rlem_gym.prompts import build_advice_prompt, prompt_budget
from rlem_gym.trajectory import Situation

WEBSHOP = get_adapter("webshop")
WIKIHOW = get_adapter("wikihow")


@pytest.fixture(scope="module")
def webshop_env():
    env = gym.make("rlem_gym/WebShop-v0")
    yield env
    env.close()


# ------------------------------------------------------------------- shipped examples vs the env
def test_webshop_react_example_and_exemplars_match_the_env(webshop_env):
    """The hand-written WebShop examples show exactly what the env shows for those actions."""
    from rlem_gym.agents import webshop_adapter as wa

    env = webshop_env.unwrapped
    test_goals = set(gym.make("rlem_gym/WebShop-v0", split="test").unwrapped.split)
    for goal_index, actions in ((wa.REACT_GOAL_INDEX, wa.REACT_ACTIONS), (wa.STATIC_GOAL_INDEX, wa.STATIC_ACTIONS)):
        obs, info = env.reset(seed=0, options={"goal_index": goal_index})
        assert goal_index not in test_goals  # examples never show a test goal
        pages = [(obs, info)]
        for action in actions:
            assert WEBSHOP.is_valid(action, info), action
            obs, reward, terminated, _, info = env.step(action)
            assert not info.get("last_action_error")
            pages.append((obs, info))
        assert terminated and reward == 1.0  # each example buys the right product
        if goal_index == wa.REACT_GOAL_INDEX:
            for page, _ in pages[:-1]:
                assert page in wa.REACT_EXAMPLE
            assert all(f"Action: {a}" in wa.REACT_EXAMPLE for a in actions)
        else:
            shown = {p: i for p, i in pages[:-1]}
            for ex in WEBSHOP.default_exemplars():
                assert ex.input.observation in shown
                info = shown[ex.input.observation]
                assert ex.input.available_actions == WEBSHOP.available_actions(info)
                assert WEBSHOP.is_valid(ex.encouraged[0].action, info)


# ------------------------------------------------------------------- prompt budget, real tokenizer
def test_prompt_budget_with_the_real_tokenizer(hf_llm, webshop_env):
    obs, info = webshop_env.reset(seed=0, options={"task_index": 0})
    huge = (obs + "\n") * 400  # a product page far longer than the context window
    exemplars = WEBSHOP.default_exemplars()
    exemplars = [type(e)(Situation(e.input.task, huge), e.encouraged, e.discouraged) for e in exemplars]
    for max_tokens in (48, 512):
        budget = prompt_budget(hf_llm, max_tokens)
        built = build_advice_prompt(
            hf_llm,
            preamble=WEBSHOP.preamble,
            render_input=WEBSHOP.render_input,
            exemplars=exemplars,
            query=Situation(info["instruction"], huge),
            budget=budget,
        )
        assert built.tokens == hf_llm.count_tokens(built.text) + hf_llm.count_tokens("Encouraged:\n") <= budget
        # with the chat template the backend adds and the cue prefilled, prompt + completion still fit the window
        assert len(hf_llm.prompt_ids(built.text, built.response_prefix)) + max_tokens <= hf_llm.context_length
        assert built.response_prefix == "Encouraged:\n" and built.truncated_observations >= 1


# ------------------------------------------------------------------------------ end to end, slow
def _run_episode(env, agent, task_index):
    obs, info = env.reset(seed=task_index, options={"task_index": task_index})
    agent.reset(obs, info)
    steps = []
    while True:
        action = agent.act(obs, info)
        assert WEBSHOP.is_valid(action, info) or action == WEBSHOP.noop_action
        assert agent.last_step.action == action and agent.last_step.prompt and agent.last_step.prompt_tokens > 0
        key_obs = obs
        obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(action, reward, terminated, truncated, info)
        steps.append((key_obs, action, float(reward)))
        if terminated or truncated:
            return steps, info


def _expected_q(steps):
    """Full-return targets, averaged per (observation, action) as the paper's mean update does."""
    targets = defaultdict(list)
    ret = 0.0
    for obs, action, reward in reversed(steps):
        ret += reward
        targets[(obs, action)].append(ret)
    return {k: sum(v) / len(v) for k, v in targets.items()}


@pytest.fixture(scope="module")
def fast_llm(request):
    """llama.cpp when installed (about 7x faster decoding), else HF transformers."""
    if importlib.util.find_spec("llama_cpp") is not None:
        return request.getfixturevalue("gguf_llm")
    return request.getfixturevalue("hf_llm")


@pytest.mark.slow
@pytest.mark.parametrize("backend,max_steps,k", [("gguf_llm", 5, 2), ("hf_llm", 2, 1)])
def test_rememberer_webshop_episode_end_to_end(backend, max_steps, k, request):
    """The done-means test: train-mode episode, Q values stored, then retrieval in a second episode.

    HF decodes ~7x slower than llama.cpp on 2 cores, so its run is shorter (2 steps, k=1).
    """
    from rlem_gym.memory.embeddings import default_embedder
    from rlem_gym.memory import ExperienceMemory, MemoryKey

    llm = request.getfixturevalue(backend)
    env = RecordEpisodeStatistics(gym.make("rlem_gym/WebShop-v0", max_episode_steps=max_steps))
    memory = ExperienceMemory(WEBSHOP.make_matcher(default_embedder()))
    agent = Rememberer(llm, memory, "webshop", k=k, max_tokens=48).train()

    steps, info = _run_episode(env, agent, task_index=0)
    assert 1 <= len(steps) <= max_steps
    assert info["episode"]["l"] == len(steps) and info["episode"]["r"] == pytest.approx(sum(r for _, _, r in steps))
    assert agent.stats.steps == len(steps) and agent.stats.episodes == 1
    # constrained training: each step decodes the action, then the free rest of the reply (its Q value)
    assert agent.action_decoding == "constrained" and agent.stats.llm_calls == 2 * len(steps)
    task = info["instruction"]
    first_ids = {r.id for r in memory.records()}
    assert len(memory) == len({o for o, _, _ in steps}) >= 1
    for (obs, action), q in _expected_q(steps).items():
        rec = memory.get(MemoryKey(task, obs, ""))
        assert rec is not None and rec.actions[action].q == pytest.approx(q)

    # a second episode of the same task retrieves the first episode's records
    obs, info = env.reset(seed=0, options={"task_index": 0})
    agent.reset(obs, info)
    agent.act(obs, info)
    assert agent.last_step.retrieved_ids and set(agent.last_step.retrieved_ids) <= first_ids
    assert "Here are some examples:" in agent.last_step.prompt
    env.close()


@pytest.mark.slow
def test_react_and_static_agents_run_a_real_step(fast_llm, webshop_env, monkeypatch):
    """One real step of each agent; the checks hold whatever the 135M model says."""
    from rlem_gym.advice import ReActLine, parse_advice, parse_react_line

    calls = []  # (prompt, response_prefix, completion) of every LLM call
    generate = fast_llm.generate

    def recording_generate(prompt, **kwargs):
        completion = generate(prompt, **kwargs)
        calls.append((prompt, kwargs.get("response_prefix", ""), completion))
        return completion

    monkeypatch.setattr(fast_llm, "generate", recording_generate)
    obs, info = webshop_env.reset(seed=1, options={"task_index": 1})
    for agent in (
        ReActAgent(fast_llm, "webshop", max_tokens=24, max_thinks=1),
        StaticExemplarAgent(fast_llm, adapter="webshop", max_tokens=32),
    ):
        calls.clear()
        agent.reset(obs, info)
        action = agent.act(obs, info)
        step = agent.last_step
        assert WEBSHOP.is_valid(action, info) and agent.stats.llm_calls >= 1
        assert agent.last_step.raw_output is not None and agent.last_step.prompt_tokens > 0
        # the counters and the step record agree with the calls that were made
        assert agent.stats.steps == 1 and agent.stats.llm_calls == len(calls)
        assert agent.stats.fallbacks == int(step.fallback) and bool(step.fallback_reason) == step.fallback
        assert step.action == action and step.prompt == calls[-1][0]
        assert step.raw_output == "\n".join(c.text for _, _, c in calls)
        assert step.prompt_tokens == sum(c.prompt_tokens for _, _, c in calls)
        for prompt, prefix, completion in calls:
            if hasattr(fast_llm, "prompt_ids"):  # the backend's own count of what the model is fed
                assert completion.prompt_tokens == len(fast_llm.prompt_ids(prompt, prefix))
            else:  # the chat template only adds tokens
                assert completion.prompt_tokens >= fast_llm.count_tokens(prompt + prefix)
        # without a fallback, the action is the one the model's (last) reply names
        prefix, reply = calls[-1][1], calls[-1][2].text
        if isinstance(agent, ReActAgent):
            assert prefix == "Action:" and len(calls) == len(step.parsed) + 1
            if not step.fallback:
                assert parse_react_line(prefix + reply, WEBSHOP.extract_actions) == ReActLine("act", action)
        else:
            parsed = parse_advice(prefix + reply, WEBSHOP.extract_actions)
            assert prefix == "Encouraged:\n" and parsed == step.parsed
            if not step.fallback:
                valid = [a for a in parsed.encouraged if WEBSHOP.is_valid(a.action, info)]
                assert valid and (valid[0].action, valid[0].reason) == (action, step.reason)


# ------------------------------------------------------------------------------ WikiHow adapter
def test_wikihow_adapter_agrees_with_the_env():
    """Every oracle action is valid for the adapter; invalid-for-the-adapter clicks are rejected by the env."""
    from rlem_gym.envs.wikihow import WikiHowOracle

    env = gym.make("rlem_gym/WikiHow-v0", max_episode_steps=60)
    oracle = WikiHowOracle()
    for task_index in range(3):
        obs, info = env.reset(seed=task_index, options={"task_index": task_index})
        oracle.reset()
        task, screen, instruction = WIKIHOW.memory_key(obs, info)
        assert task == "\n".join(info["task_lines"]) and screen == obs and instruction == info["instruction"]
        for _ in range(12):
            action = oracle.act(obs, info)
            assert WIKIHOW.canonicalize(action) == action and WIKIHOW.is_valid(action, info), action
            bogus = f"CLICK({max(info['clickable_ids'] + info['input_ids'] + [0]) + 1000})"
            assert not WIKIHOW.is_valid(bogus, info)
            _, _, _, _, after = env.step(bogus)
            assert after.get("last_action_error")
            obs, reward, terminated, truncated, info = env.step(action)
            assert not info.get("last_action_error"), (action, info.get("last_action_error"))
            if terminated or truncated:
                break
        assert terminated
        fb = WIKIHOW.fallback(obs, info, "first_valid", None)
        assert WIKIHOW.is_valid(fb, info)
    env.close()
