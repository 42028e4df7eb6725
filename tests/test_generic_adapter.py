"""The generic adapter: the agents on a small text env defined here, with no adapter subclass.

The fast tests cover where the valid actions come from, the memory key, the action constraint,
the keyword overrides and the errors on envs the adapter cannot drive, with a scripted LLM for
control flow. The slow test runs the Rememberer, ReAct and static agents with the real shipped
Qwen2.5-Coder-0.5B (llama.cpp) and SmolLM2-135M (HF transformers, installed by the test command).
"""

from __future__ import annotations

import enum
import importlib.util

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from rlem_gym.agents import make_agent
from rlem_gym.agents.adapters import get_adapter
from rlem_gym.agents.generic_adapter import GenericAdapter, GenericMatcher
from rlem_gym.llm.base import LLM, Completion
from rlem_gym.llm.constraint import ActionConstraint
from rlem_gym.memory.similarity import MemoryKey
from rlem_gym.prompts import Exemplar
from rlem_gym.trajectory import Situation
from rlem_gym.spaces import CHARSET

GOAL = "Open the chest in the study."
ALL_ACTIONS = ("take key", "go north", "go south", "open chest", "look")


class KeyRoomEnv(gym.Env):
    """A two-room text game: take the key in the hall, go north, open the chest (reward 1).

    ``listing`` says where the valid actions are: ``"available_actions"`` or
    ``"admissible_commands"`` (``info`` lists this step's actions), ``"names"`` (the env's
    ``action_names``, all of them at every step), ``"none"`` (nowhere). ``goal_in_info=False``
    leaves the goal out of ``info``; the first observation states it. ``discrete=True`` steps
    with the index of an action of ``action_names``.
    """

    metadata = {"render_modes": []}

    def __init__(self, listing: str = "available_actions", goal_in_info: bool = True, discrete: bool = False):
        self.listing = listing
        self.goal_in_info = goal_in_info
        self.observation_space = spaces.Text(max_length=4096, charset=CHARSET)
        self.action_space = spaces.Discrete(len(ALL_ACTIONS)) if discrete else spaces.Text(64, charset=CHARSET)
        if listing == "names" or discrete:
            self.action_names = list(ALL_ACTIONS)
        self.room, self.has_key = "hall", False

    def _valid(self) -> list[str]:
        if self.room == "hall":
            return (["take key"] if not self.has_key else []) + ["go north", "look"]
        return ["go south", "open chest", "look"]

    def _info(self) -> dict:
        info = {}
        if self.goal_in_info:
            info["goal"] = GOAL
        if self.listing in ("available_actions", "admissible_commands"):
            info[self.listing] = self._valid()
        return info

    def _describe(self) -> str:
        if self.room == "hall":
            return "You are in the hall." + (" A key lies on the floor." if not self.has_key else "")
        return "You are in the study. There is a locked chest."

    def step(self, action):
        if isinstance(action, (int, np.integer)):
            action = ALL_ACTIONS[int(action)]
        reward, terminated = 0.0, False
        if action not in self._valid():
            info = self._info() | {"last_action_error": f"{action!r} is not possible here"}
            return "Nothing happens.", 0.0, False, False, info
        if action == "take key":
            self.has_key, text = True, "You take the key."
        elif action in ("go north", "go south"):
            self.room = "study" if action == "go north" else "hall"
            text = self._describe()
        elif action == "open chest":
            terminated = self.has_key
            reward = 1.0 if self.has_key else 0.0
            text = "You open the chest. Well done!" if self.has_key else "The chest is locked."
        else:
            text = self._describe()
        return text, reward, terminated, False, self._info()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.room, self.has_key = "hall", False
        head = "" if self.goal_in_info else f"Your task: {GOAL.lower()} "
        return head + self._describe(), self._info()


class ScriptedLLM(LLM):
    """Replies from a script in turn (the last one repeats); records each call."""

    name = "scripted"
    context_length = 4096

    def __init__(self, replies, supports_constraint: bool = False):
        self.replies = list(replies)
        self.supports_constraint = supports_constraint
        self.calls: list[dict] = []

    def generate(
        self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix="", constraint=None
    ):
        self.calls.append({"prompt": prompt, "prefix": response_prefix, "constraint": constraint})
        text = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        return Completion(text, self.count_tokens(prompt), self.count_tokens(text), 0.0, "stop")


def run_episode(env, agent, seed=0, max_steps=8):
    """The plain Gymnasium loop; returns the actions taken and the total reward."""
    obs, info = env.reset(seed=seed)
    agent.reset(obs, info)
    actions, total = [], 0.0
    for _ in range(max_steps):
        action = agent.act(obs, info)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(agent.adapter.env_action(action))
        total += reward
        agent.observe(action, reward, terminated, truncated or len(actions) == max_steps, info)
        if terminated or truncated:
            break
    return actions, total


# ------------------------------------------------------------------------------ action discovery
@pytest.mark.parametrize("listing", ["available_actions", "admissible_commands"])
def test_actions_come_from_the_info_list(listing):
    env = KeyRoomEnv(listing)
    adapter = GenericAdapter(env)
    _, info = env.reset(seed=0)
    assert adapter.available_actions(info) == ("take key", "go north", "look")
    assert adapter.is_valid("take key", info) and not adapter.is_valid("open chest", info)
    env.step("go north")
    _, _, _, _, info = env.step("look")
    assert adapter.available_actions(info) == ("go south", "open chest", "look")


def test_actions_come_from_the_envs_action_names_on_a_text_space():
    env = KeyRoomEnv("names")
    adapter = GenericAdapter(env)
    _, info = env.reset(seed=0)
    assert "available_actions" not in info and adapter.available_actions(info) == ALL_ACTIONS
    assert adapter.env_action("open chest") == "open chest"  # a Text env steps with the string


def test_discrete_action_space_with_names_steps_with_indices():
    env = KeyRoomEnv("names", discrete=True)
    adapter = GenericAdapter(env)
    _, info = env.reset(seed=0)
    assert adapter.available_actions(info) == ALL_ACTIONS
    assert [adapter.env_action(a) for a in ALL_ACTIONS] == [0, 1, 2, 3, 4]
    obs, *_ = env.step(adapter.env_action("take key"))
    assert obs == "You take the key."
    with pytest.raises(ValueError, match="not one of the env's actions"):
        adapter.env_action("dance")


def test_discrete_names_from_an_actions_enum_and_from_action_meanings():
    class Actions(enum.IntEnum):
        right = 1
        left = 0
        done = 2

    class EnumEnv(gym.Env):
        observation_space = spaces.Text(100, charset=CHARSET)
        action_space = spaces.Discrete(3)
        actions = Actions

    adapter = GenericAdapter(EnumEnv())
    assert adapter.available_actions({}) == ("left", "right", "done")
    assert [adapter.env_action(a) for a in ("left", "right", "done")] == [0, 1, 2]

    class AtariLike(gym.Env):
        observation_space = spaces.Text(100, charset=CHARSET)
        action_space = spaces.Discrete(2, start=5)

        def get_action_meanings(self):
            return ["NOOP", "FIRE"]

    adapter = GenericAdapter(AtariLike())
    assert adapter.available_actions({}) == ("NOOP", "FIRE") and adapter.env_action("FIRE") == 6


def test_a_user_callable_wins_over_info_and_names():
    env = KeyRoomEnv("available_actions")
    adapter = GenericAdapter(env, actions=lambda info: ["look"] if info.get("goal") else [])
    _, info = env.reset(seed=0)
    assert adapter.available_actions(info) == ("look",)
    assert adapter.available_actions({}) == ()
    assert adapter.fallback("obs", {}, "first_valid", np.random.default_rng(0)) == adapter.noop_action
    # action_names= replaces the env's own names
    assert GenericAdapter(KeyRoomEnv("names"), action_names=["look"]).available_actions({}) == ("look",)


def test_get_adapter_and_make_agent_accept_the_env_object():
    env = KeyRoomEnv()
    assert isinstance(get_adapter(env), GenericAdapter)
    agent = make_agent("react", ScriptedLLM(["look"]), env)
    assert isinstance(agent.adapter, GenericAdapter) and agent.adapter.env is env


# ------------------------------------------------------------------------------ memory key
def test_memory_key_task_from_info_and_the_current_observation():
    env = KeyRoomEnv()
    adapter = GenericAdapter(env)
    obs, info = env.reset(seed=0)
    adapter.begin_episode(obs, info)
    assert adapter.memory_key(obs, info) == (GOAL, "You are in the hall. A key lies on the floor.", "")
    obs, _, _, _, info = env.step("go north")
    assert adapter.memory_key(obs, info) == (GOAL, "You are in the study. There is a locked chest.", "")


def test_memory_key_task_from_the_first_observation_when_info_names_none():
    env = KeyRoomEnv(goal_in_info=False)
    adapter = GenericAdapter(env)
    first, info = env.reset(seed=0)
    adapter.begin_episode(first, info)
    obs, _, _, _, info = env.step("take key")
    assert adapter.memory_key(obs, info) == (first, "You take the key.", "")
    adapter.begin_episode("Your task: find the exit.", {})  # a new episode keys on its own first observation
    assert adapter.memory_key(obs, info)[0] == "Your task: find the exit."


def test_memory_key_from_a_dict_observation_with_its_text_rendering():
    adapter = GenericAdapter(
        task_keys=("mission",),
        observation=lambda obs, info: f"You see {obs['view']}.",
        action_names=["forward", "left"],
    )
    obs = {"mission": "go to the red ball", "view": "a wall"}
    assert adapter.memory_key(obs, {}) == ("go to the red ball", "You see a wall.", "")
    adapter = GenericAdapter(task=lambda obs, info: "my own task", action_names=["forward"])
    assert adapter.memory_key("text", {"goal": GOAL})[0] == "my own task"


def test_matcher_scores_task_lcs_and_observation_equality():
    matcher = GenericAdapter(KeyRoomEnv()).make_matcher()
    assert isinstance(matcher, GenericMatcher) and matcher.embedder is None
    a = MemoryKey(GOAL, "You are in the hall.")
    assert matcher.score(a, MemoryKey(GOAL, "you are  in the HALL."))[1:] == (1.0, 1.0)
    combined, task_sim, obs_sim = matcher.score(a, MemoryKey("Open the box in the study.", "You are outside."))
    assert obs_sim == 0.0 and 0.5 < task_sim < 1.0 and combined == pytest.approx(0.5 * task_sim)
    by_room = GenericAdapter(KeyRoomEnv(), obs_feature=lambda text: text.split(".")[0]).make_matcher()
    assert by_room.score(a, MemoryKey(GOAL, "You are in the hall. A key lies here."))[2] == 1.0


# ------------------------------------------------------------------------------ actions and constraint
def test_constraint_lists_exactly_the_valid_actions_and_round_trips():
    env = KeyRoomEnv()
    adapter = GenericAdapter(env)
    _, info = env.reset(seed=0)
    constraint = adapter.action_constraint(info)
    assert isinstance(constraint, ActionConstraint) and constraint.literals == ("take key", "go north", "look")
    assert not constraint.templates and not constraint.matches("go south")
    for action in constraint.literals:
        assert adapter.extract_actions(action) == [action] and adapter.is_valid_canonical(action, info)
    spanning = GenericAdapter(actions=lambda info: ["say\nhello", "wave"])
    assert spanning.action_constraint({}).literals == ("wave",)


def test_extract_matches_listed_actions_loosely_and_keeps_unknown_ones_invalid():
    env = KeyRoomEnv()
    adapter = GenericAdapter(env)
    _, info = env.reset(seed=0)
    adapter.available_actions(info)
    assert adapter.extract_actions("  Go   North.") == ["go north"]
    assert adapter.extract_actions("`take key`") == ["take key"]
    assert adapter.extract_actions("**look**\nmore text") == ["look"]
    assert adapter.extract_actions("fly away") == ["fly away"] and not adapter.is_valid("fly away", info)
    assert adapter.extract_actions("   \n ") == []


def test_constrained_decoding_passes_the_listed_actions_to_the_llm():
    env = KeyRoomEnv()
    llm = ScriptedLLM(["go north"], supports_constraint=True)
    agent = make_agent("static", llm, env=env, action_decoding="constrained")
    obs, info = env.reset(seed=0)
    agent.reset(obs, info)
    assert agent.act(obs, info) == "go north" and not agent.last_step.fallback
    assert llm.calls[0]["constraint"].literals == ("take key", "go north", "look")
    react = make_agent("react", llm, env=env, action_decoding="constrained")
    react.reset(obs, info)
    react.act(obs, info)
    allowed = llm.calls[-1]["constraint"]
    assert allowed.matches(" take key") and allowed.matches(" think[x]") and not allowed.matches(" go south")


# ------------------------------------------------------------------------------ agents, scripted LLM
def test_rememberer_learns_on_the_env_with_no_subclass():
    env = KeyRoomEnv()
    reply = "take key -> 1.0 The key opens the chest.\nDiscouraged:\nlook -> 0.0 Looking wastes a step."
    llm = ScriptedLLM([reply, "go north -> 1.0 The study is north.", "open chest -> 1.0 That is the task."])
    agent = make_agent("rememberer", llm, env=env).train()
    actions, total = run_episode(env, agent)
    assert actions == ["take key", "go north", "open chest"] and total == 1.0
    assert agent.stats.fallbacks == 0 and len(agent.memory) == 3
    record = agent.memory.get(MemoryKey(GOAL, "You are in the hall. A key lies on the floor."))
    assert record.actions["take key"].q == 1.0 and record.actions["take key"].reason == "The key opens the chest."
    # the second episode retrieves the first one's records and shows them in the prompt
    agent.eval()
    run_episode(env, agent, seed=1)
    assert agent.last_step.retrieved and "Encouraged:\ntake key -> 1.0" in llm.calls[3]["prompt"]
    assert "Available Actions:\n- take key\n- go north\n- look" in llm.calls[3]["prompt"]


def test_react_and_static_run_with_fallbacks_counted():
    env = KeyRoomEnv()
    react = make_agent("react", ScriptedLLM(["think[I need the key]", "take key", "dance", "go north"]), env=env)
    actions, _ = run_episode(env, react, max_steps=3)
    # "dance" is no action here and "go north" is none in the study: each falls back to the first listed one
    assert actions == ["take key", "go north", "go south"]
    assert react.stats.fallbacks == 2 and react.stats.llm_calls == 4
    assert react.last_step.fallback_reason == "invalid action 'go north'"
    static = make_agent("static", ScriptedLLM(["open chest -> 1.0 task"]), env=env)
    actions, _ = run_episode(env, static, max_steps=2)
    assert actions == ["take key", "go north"] and static.stats.fallbacks == 2
    assert "Example 1:" in static.last_step.prompt and "open red box -> 1.0" in static.last_step.prompt


def test_react_shows_the_task_and_the_listed_actions():
    env = KeyRoomEnv()
    llm = ScriptedLLM(["look"])
    agent = make_agent("react", llm, env=env)
    obs, info = env.reset(seed=0)
    agent.reset(obs, info)
    agent.act(obs, info)
    shown = f"Task: {GOAL}\nYou are in the hall. A key lies on the floor.\nAvailable actions:\n- take key"
    assert shown in llm.calls[0]["prompt"]


# ------------------------------------------------------------------------------ keyword overrides
def test_keywords_override_each_piece():
    env = KeyRoomEnv()
    exemplar = Exemplar(Situation("find gold", "A cave.", available_actions=("dig",)))
    adapter = GenericAdapter(
        env,
        description="I play a tiny text adventure.",
        react_example="EXAMPLE",
        exemplars=[exemplar],
        noop_action="wait",
        name="keyroom",
    )
    assert adapter.preamble.startswith("I play a tiny text adventure.") and "Available Actions" in adapter.preamble
    assert adapter.react_preamble.startswith("I play a tiny text adventure.") and "think[" in adapter.react_preamble
    assert adapter.react_example() == "EXAMPLE" and adapter.default_exemplars() == [exemplar]
    assert adapter.fallback("", {}, "noop", np.random.default_rng(0)) == "wait" and adapter.name == "keyroom"
    agent = make_agent(
        "rememberer", ScriptedLLM(["look"]), env=env, preamble="MY PREAMBLE", k=1, obs_feature=lambda text: "same"
    )
    assert agent.adapter.preamble == "MY PREAMBLE" and agent.k == 1
    assert agent.memory.matcher.obs_feature(MemoryKey("a", "b")) == "same"
    react = make_agent("react", ScriptedLLM(["look"]), env=env, react_preamble="RP", react_example="RE")
    assert react.head.startswith("RP\n\nRE")


# ------------------------------------------------------------------------------ envs it cannot adapt
def test_clear_errors_on_envs_it_cannot_adapt():
    class ImageEnv(gym.Env):
        observation_space = spaces.Box(0, 1, (3,))
        action_space = spaces.Discrete(2)

    with pytest.raises(ValueError, match=r"ImageEnv: its observations are Box, not text; pass observation="):
        GenericAdapter(ImageEnv())
    with pytest.raises(ValueError, match=r"Discrete\(2\) actions have no names; pass action_names="):
        GenericAdapter(ImageEnv(), observation=lambda obs, info: "x")
    with pytest.raises(ValueError, match=r"3 action names for Discrete\(2\)"):
        GenericAdapter(ImageEnv(), observation=lambda obs, info: "x", action_names=["a", "b", "c"])

    class ContinuousEnv(gym.Env):
        observation_space = spaces.Text(10)
        action_space = spaces.Box(-1, 1, (2,))

    with pytest.raises(ValueError, match="action space is Box, neither Text nor Discrete"):
        GenericAdapter(ContinuousEnv())
    with pytest.raises(TypeError, match="actions= must be a callable"):
        GenericAdapter(KeyRoomEnv(), actions=["look"])


def test_clear_errors_at_a_step_that_lists_no_usable_actions():
    adapter = GenericAdapter(KeyRoomEnv("none"))
    with pytest.raises(ValueError, match="no valid actions for this step.*pass actions="):
        adapter.available_actions({"goal": GOAL})
    webshop_like = {"available_actions": {"has_search_bar": True, "clickables": ["buy now"]}}
    with pytest.raises(ValueError, match=r"info\['available_actions'\] is a dict, not a list of action strings"):
        adapter.available_actions(webshop_like)
    with pytest.raises(ValueError, match=r"holds a int \(3\)"):
        adapter.available_actions({"admissible_commands": ["look", 3]})
    with pytest.raises(TypeError, match="observation is a dict, not text: pass observation="):
        adapter.memory_key({"image": 0}, {})
    agent = make_agent("rememberer", ScriptedLLM(["look"]), env=KeyRoomEnv("none"))
    obs, info = agent.adapter.env.reset(seed=0)
    agent.reset(obs, info)
    with pytest.raises(ValueError, match="no valid actions for this step"):
        agent.act(obs, info)


def test_make_agent_argument_errors():
    llm = ScriptedLLM(["look"])
    with pytest.raises(ValueError, match="give the env once"):
        make_agent("react", llm, "webshop", env=KeyRoomEnv())
    with pytest.raises(ValueError, match="description apply to the generic adapter: pass env="):
        make_agent("react", llm, "webshop", description="x")
    with pytest.raises(TypeError, match="make_agent needs an env"):
        make_agent("react", llm)
    with pytest.raises(TypeError, match="env= takes an env object"):
        make_agent("react", llm, env="webshop")
    with pytest.raises(ValueError, match="the 'heuristic' agent has no policy for env 'generic'"):
        make_agent("heuristic", llm, env=KeyRoomEnv())


# ------------------------------------------------------------------------------ the real model, slow
def _real_llm(which: str):
    from rlem_gym.llm import make_llm

    if which == "smollm2":  # the small model the test command installs (HF transformers)
        return make_llm("smollm2")
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install rlem-gym[llamacpp])")
    from rlem_gym.models import zoo_model

    model = zoo_model("qwen2.5-coder-0.5b")
    if not model.installed:
        pytest.skip(f"the qwen2.5-coder-0.5b model packages are not installed ({model.install_command()})")
    return make_llm("qwen2.5-coder-0.5b:gguf")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["qwen", "smollm2"])
def test_real_model_drives_all_three_agents_through_the_generic_adapter(which):
    """A real shipped model, constrained decoding: every action is one the env lists; training fills the memory."""
    llm = _real_llm(which)
    try:
        env = KeyRoomEnv()
        agents = {
            name: make_agent(name, llm, env=env, action_decoding="constrained", max_tokens=48)
            for name in ("rememberer", "react", "static")
        }
        agents["rememberer"].train()
        for name, agent in agents.items():
            obs, info = env.reset(seed=0)
            agent.reset(obs, info)
            for step in range(3):
                listed = list(info["available_actions"])
                action = agent.act(obs, info)
                assert action in listed, (name, step, action, listed)
                assert not agent.last_step.fallback, (name, agent.last_step.fallback_reason)
                obs, reward, terminated, _, info = env.step(action)
                assert not info.get("last_action_error")
                agent.observe(action, reward, terminated, step == 2, info)
                if terminated:
                    break
        rememberer = agents["rememberer"]
        assert rememberer.stats.episodes == 1 and len(rememberer.memory) >= 1
        steps = rememberer.episode_steps
        assert all(rememberer.memory.get(s.situation.key) is not None for s in steps)
        # the learned record comes back as an exemplar in the next (eval) episode's prompt
        rememberer.eval()
        obs, info = env.reset(seed=1)
        rememberer.reset(obs, info)
        assert rememberer.act(obs, info) in info["available_actions"]
        assert rememberer.last_step.retrieved and "Example 1:" in rememberer.last_step.prompt
    finally:
        llm.close()
