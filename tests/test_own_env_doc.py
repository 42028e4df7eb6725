"""The README's "Your own env" example runs as written, with a scripted LLM in place of the model; docs/own_env.md's TextWorld snippet builds its agent."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import rlem_gym.llm
from rlem_gym.agents.generic_adapter import GenericAdapter
from rlem_gym.llm.base import LLM, Completion
from rlem_gym.memory import ExperienceMemory

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own_env.md"
README = ROOT / "README.md"


def code_blocks(path: Path = DOC, section: str = "") -> list[str]:
    """The python code blocks of ``path`` (of its ``## section`` only, when given), in order."""
    text = path.read_text(encoding="utf-8")
    if section:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


class GoalReadingLLM(LLM):
    """Constrained calls: the listed action naming the prompt's last goal color (else the first); then a reason."""

    name = "goal-reading"
    context_length = 4096
    supports_constraint = True

    def __init__(self):
        self.calls = 0

    def generate(
        self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix="", constraint=None
    ):
        self.calls += 1
        if constraint is None:
            return Completion(" -> 1.0 The goal names this door.", 10, 5, 0.0, "stop")
        goal = prompt.rsplit("Task:\n", 1)[1].split("\n", 1)[0]
        wanted = [a for a in constraint.literals if a.split()[2] in goal]
        return Completion((wanted or list(constraint.literals))[0], 10, 3, 0.0, "stop")


def test_the_example_trains_the_rememberer_on_its_env(monkeypatch, tmp_path):
    llm = GoalReadingLLM()
    asked = []
    monkeypatch.setattr(rlem_gym.llm, "make_llm", lambda spec=None, **kw: asked.append(spec) or llm)
    monkeypatch.chdir(tmp_path)
    (example,) = code_blocks(README, "Your own env")
    assert len(example.splitlines()) <= 35
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)  # the doc's own code, as written
    agent = namespace["agent"]
    assert asked == [None] and isinstance(agent.adapter, GenericAdapter)  # make_llm(): the default model
    assert agent.stats.episodes == 6 and agent.stats.fallbacks == 0 and llm.calls > 0
    assert agent.stats.steps == 6  # each episode opened the goal's door at its first step
    saved = ExperienceMemory.load(tmp_path / "doors-memory", agent.adapter.make_matcher())
    goals = {namespace["env"].reset(seed=episode)[1]["goal"] for episode in range(6)}
    assert len(saved) == len(agent.memory) == len(goals) >= 2  # one record per goal, at the first observation
    assert {r.key.task for r in saved.records()} == goals
    assert all(max(s.q for s in r.actions.values()) == 1.0 for r in saved.records())


@pytest.mark.skipif(
    importlib.util.find_spec("textworld") is None, reason="TextWorld is not installed (pip install rlem-gym[textworld])"
)
def test_the_textworld_snippet_builds_its_agent(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    namespace = {"llm": GoalReadingLLM()}
    exec(compile(code_blocks()[0], str(DOC), "exec"), namespace)
    assert namespace["agent"].adapter.preamble.startswith("I play a text adventure game.")
    namespace["env"].close()
