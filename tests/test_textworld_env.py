"""TextWorld through the generic adapter: locally generated games, the Gymnasium wrapper, the agents.

Needs the ``textworld`` extra (``pip install rlem-gym[textworld]``); the tests that run a game
skip with that reason without it. Games are generated into a temporary cache (about 2 s each).
"""

from __future__ import annotations

import importlib.util
import sys

import gymnasium as gym
import pytest

import rlem_gym  # noqa: F401  (registers the env ids)
from rlem_gym.agents import make_agent
from rlem_gym.agents.generic_adapter import GenericAdapter
from rlem_gym.envs.textworld_env import clean_feedback
from rlem_gym.llm.base import LLM, Completion

needs_textworld = pytest.mark.skipif(
    importlib.util.find_spec("textworld") is None, reason="TextWorld is not installed (pip install rlem-gym[textworld])"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("textworld-games")


@pytest.fixture
def env(cache):
    env = gym.make("rlem_gym/TextWorld-v0", num_games=2, cache_dir=cache)
    yield env
    env.close()


def walkthrough(game_file) -> list[str]:
    """The generator's winning command list for a game."""
    import textworld

    return list(textworld.Game.load(str(game_file.with_suffix(".json"))).metadata["walkthrough"])


class FirstListedLLM(LLM):
    """Answers each prompt with the first action of its last 'Available Actions' list (control flow only)."""

    name = "first-listed"
    context_length = 8192

    def generate(
        self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix="", constraint=None
    ):
        listed = prompt.rsplit("Available Actions:\n- ", 1)[1].split("\n", 1)[0]
        return Completion(f"{listed} -> 0.5 It is listed.", 10, 5, 0.0, "stop")


def test_clean_feedback_drops_the_title_art_and_the_prompt_line():
    raw = "\n\n  | $$  $$ |\n   \\$$$$ \n\nYour task: go east.\n\n\n\n-= Hall =-\nA hall.\n\n>   -= Hall =-0/1"
    assert clean_feedback(raw) == "Your task: go east.\n\n-= Hall =-\nA hall."


def test_without_the_extra_the_error_names_it(monkeypatch):
    from rlem_gym.envs.textworld_env import TextWorldEnv

    monkeypatch.setitem(sys.modules, "textworld", None)
    with pytest.raises(ImportError, match=r"pip install rlem-gym\[textworld\]"):
        TextWorldEnv()


@needs_textworld
def test_generated_game_is_cached_reproducible_and_won_by_its_walkthrough(env, cache):
    first, info = env.reset(seed=0, options={"game_index": 0})
    game = cache / info["game"]
    assert game.exists() and info["objective"] in first and "$$" not in first and ">" not in first
    built = game.stat().st_mtime_ns
    again = gym.make("rlem_gym/TextWorld-v0", num_games=2, cache_dir=cache)
    assert again.reset(seed=0, options={"game_index": 0}) == (first, info)
    assert game.stat().st_mtime_ns == built  # taken from the cache, not generated again
    again.close()
    total, terminated = 0.0, False
    for command in walkthrough(game):
        assert command in info["admissible_commands"]
        obs, reward, terminated, truncated, info = env.step(command)
        assert obs in env.observation_space and not info["last_action_error"]
        total += reward
    assert terminated and info["won"] and total == info["max_score"] == info["score"] >= 1


@needs_textworld
def test_a_command_that_is_not_admissible_changes_nothing(env):
    obs, info = env.reset(seed=0, options={"game_index": 0})
    after, reward, terminated, _, error_info = env.step("dance wildly")
    assert (after, reward, terminated) == (obs, 0.0, False)
    assert "not an admissible command" in error_info["last_action_error"]
    assert error_info["admissible_commands"] == info["admissible_commands"]


@needs_textworld
def test_the_rememberer_plays_textworld_through_the_generic_adapter(env):
    agent = make_agent("rememberer", FirstListedLLM(), env=env, description="I play a text adventure game.").train()
    assert isinstance(agent.adapter, GenericAdapter)
    obs, info = env.reset(seed=0, options={"game_index": 1})
    agent.reset(obs, info)
    for step in range(5):
        listed = info["admissible_commands"]
        action = agent.act(obs, info)
        assert action == listed[0] and not agent.last_step.fallback
        assert "I play a text adventure game." in agent.last_step.prompt
        obs, reward, terminated, _, info = env.step(action)
        assert not info["last_action_error"]
        agent.observe(action, reward, terminated, step == 4, info)
        if terminated:
            break
    # the task is the quest's objective (info["objective"]); each step's observation is a record
    first = agent.episode_steps[0].situation
    assert first.task == info["objective"] and agent.memory.get(first.key) is not None
    assert len(agent.memory) == len({s.situation.observation for s in agent.episode_steps})
