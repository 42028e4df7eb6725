"""Two traps a new user met when building the pieces by hand: each now fails loudly, saying what to pass."""

from __future__ import annotations

import pytest

from rlem_gym.agents import Rememberer, StaticExemplarAgent, make_agent
from rlem_gym.llm.base import LLM, Completion
from rlem_gym.memory import ExperienceMemory, WikiHowMatcher

INFO = {
    "instruction": "i need a pillow",
    "page": "results",
    "available_actions": {"has_search_bar": False, "clickables": ["back to search", "b078gwrc1j"]},
}


class OneReplyLLM(LLM):
    name = "one-reply"
    context_length = 4096

    def generate(self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix=""):
        text = "click[b078gwrc1j] -> 1.0 the pillow"
        return Completion(text, self.count_tokens(prompt), self.count_tokens(text), 0.0, "stop")


@pytest.mark.parametrize("args", [(), ("webshop",), ("wikihow",)])
def test_memory_without_a_matcher_says_what_to_pass(args):
    with pytest.raises(TypeError, match=r"make_matcher\(\)") as exc:
        ExperienceMemory(*args)
    assert "get_adapter(" in str(exc.value) and "make_agent(" in str(exc.value)
    if args:
        assert f"get_adapter({args[0]!r})" in str(exc.value) and "not an env name" in str(exc.value)


def test_memory_with_a_matcher_still_builds():
    memory = ExperienceMemory(WikiHowMatcher(lambda s: s), capacity=3)
    assert len(memory) == 0 and memory.capacity == 3


def test_rememberer_refuses_to_train_without_a_memory():
    agent = Rememberer(OneReplyLLM(), None, "webshop")
    with pytest.raises(ValueError, match=r"memory=None would learn nothing.*make_agent"):
        agent.train()
    assert not agent.training
    agent.eval()  # acting without a memory (no exemplars) is still allowed
    agent.reset("results", INFO)
    assert agent.act("results", INFO) == "click[b078gwrc1j]"


def test_rememberer_with_a_memory_trains_and_learns():
    memory = ExperienceMemory(WikiHowMatcher(lambda s: s))
    agent = Rememberer(OneReplyLLM(), memory, "webshop").train()
    agent.reset("results", INFO)
    action = agent.act("results", INFO)
    agent.observe(action, 1.0, True, False, INFO)
    assert len(memory) == 1


def test_make_agent_builds_the_default_memory_so_train_works():
    agent = make_agent("rememberer", OneReplyLLM(), "wikihow").train()
    assert agent.training and agent.memory is not None


def test_static_baseline_still_trains_and_evaluates_without_a_memory():
    agent = StaticExemplarAgent(OneReplyLLM(), adapter="webshop")
    for mode in (agent.train, agent.eval):
        assert mode() is agent
        agent.reset("results", INFO)
        action = agent.act("results", INFO)
        agent.observe(action, 1.0, True, False, INFO)
        assert action == "click[b078gwrc1j]" and agent.memory is None
