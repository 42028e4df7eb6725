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
from rlem_gym.envs.textworld_env import clean_feedback, game_walkthrough
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


class FirstListedLLM(LLM):
    """Answers each prompt with the first action of its last 'Available Actions' list (control flow only).

    The Rememberer's input writes "Available Actions:", ReAct's "Available actions:"."""

    name = "first-listed"
    context_length = 8192

    def generate(
        self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix="", constraint=None
    ):
        at = prompt.lower().rindex("available actions:\n- ") + len("available actions:\n- ")
        listed = prompt[at:].split("\n", 1)[0]
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
    for command in game_walkthrough(game):
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


# -- the benchmark runner's TextWorld: splits, the walkthrough oracle, the random row ----------------
def test_split_seed_ranges_are_disjoint():
    from rlem_gym.envs.textworld_env import SPLITS

    ranges = sorted((first, first + n) for first, n in SPLITS.values())
    assert all(end <= nxt for (_, end), (nxt, _) in zip(ranges, ranges[1:]))


@needs_textworld
def test_a_split_selects_its_seed_range_and_task_index_picks_a_game(cache):
    from rlem_gym.envs.textworld_env import SPLITS

    test = gym.make("rlem_gym/TextWorld-v0", split="test", cache_dir=cache)
    assert test.unwrapped.num_tasks == SPLITS["test"][1]
    _, info = test.reset(options={"task_index": 3})
    assert info["game_index"] == 3 and info["game"].endswith(f"-s{SPLITS['test'][0] + 3}.z8")
    test.close()
    with pytest.raises(ValueError, match="unknown split"):
        gym.make("rlem_gym/TextWorld-v0", split="valid", cache_dir=cache)
    with pytest.raises(ValueError, match="not both"):
        gym.make("rlem_gym/TextWorld-v0", split="test", games=["a.z8"], cache_dir=cache)


@needs_textworld
def test_reset_refuses_unknown_or_doubled_options_and_max_steps_truncates(cache):
    env = gym.make("rlem_gym/TextWorld-v0", num_games=1, cache_dir=cache, max_steps=2, max_episode_steps=30)
    env.reset(options={"game_index": 0})  # Gymnasium's env checker wants one good reset first
    with pytest.raises(ValueError, match="no reset option 'goal_index'"):
        env.reset(options={"goal_index": 0})
    with pytest.raises(ValueError, match="name the same thing"):
        env.reset(options={"game_index": 0, "task_index": 0})
    _, info = env.reset(options={"task_index": 0})
    truncated = [env.step("look")[3] for _ in range(2)]
    assert truncated == [False, True]
    env.close()


@needs_textworld
def test_the_walkthrough_oracle_wins_and_the_random_row_only_takes_listed_actions(env):
    from rlem_gym.agents import OracleAgent, RandomAgent

    oracle, rand = OracleAgent("textworld"), RandomAgent("textworld")
    obs, info = env.reset(options={"game_index": 0})
    oracle.reset(obs, info)
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(oracle.act(obs, info))
    assert info["won"]
    runs = []
    for _ in range(2):
        rand.reseed(7)
        obs, info = env.reset(options={"game_index": 1})
        rand.reset(obs, info)
        actions = []
        for _ in range(6):
            action = rand.act(obs, info)
            assert action in info["admissible_commands"]
            actions.append(action)
            obs, _, terminated, _, info = env.step(action)
            if terminated:
                break
        runs.append(actions)
    assert runs[0] == runs[1]  # the draws are a function of the seed


def test_the_registered_textworld_adapter_is_the_generic_one_set_by_keywords():
    from rlem_gym.agents import get_adapter

    adapter = get_adapter("rlem_gym/TextWorld-v0")
    assert type(adapter) is GenericAdapter and adapter.name == "textworld"
    info = {"objective": "Go east, then take the key.", "admissible_commands": ["go east", "look"]}
    assert adapter.memory_key("-= Hall =-", info) == ("Go east, then take the key.", "-= Hall =-", "")
    assert "text adventure" in adapter.preamble and "Task:" in adapter.react_example()
    assert [e.input.task for e in adapter.default_exemplars()] and all(
        e.encouraged[0].action in e.input.available_actions for e in adapter.default_exemplars()
    )


@needs_textworld
def test_the_runner_benchmarks_textworld_games_with_every_row(tmp_path, cache, monkeypatch):
    from rlem_gym.benchmarks.config import BenchConfig
    from rlem_gym.benchmarks.runner import Runner

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    cfg = BenchConfig(
        env="textworld",
        agents=("rememberer", "rememberer@untrained", "static", "react", "random", "oracle"),
        train_split="train[0:1]",
        test_split="test[0:2]",
        epochs=1,
        max_steps=4,
        seeds=(0,),
        out=str(tmp_path / "run"),
        progress=False,
    )
    results = Runner(cfg, llm_factory=lambda: FirstListedLLM(), echo=lambda m: None).run()
    rows = {row["agent"]: row for row in results["rows"]}
    assert set(rows) == set(cfg.agents)
    assert rows["oracle"]["success_rate"]["mean"] == 100.0 and rows["random"]["valid_rate"]["mean"] == 100.0
    assert {a: (rows[a]["episodes"], rows[a]["failed"]) for a in cfg.agents} == {a: (2, 0) for a in cfg.agents}
    assert results["clusters"]["unit"] == "game"
