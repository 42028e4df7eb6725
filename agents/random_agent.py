"""The ``random`` reference agent: a uniformly random valid action at every step, no LLM.

It is the chance row of a table: what an agent scores that never reads the task or the
observation but never writes an invalid action either. The actions are the adapter's fallback
candidates, drawn as the ``random_valid`` fallback draws them: the listed actions through the
generic adapter (TextWorld's admissible commands), WebShop's clickables and a search of the
instruction's keywords, WikiHow's clicks, scrolls and a search of the task. Each episode's draws
are a function of the episode's seed alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlem_gym.agents.adapters import EnvAdapter, get_adapter
from rlem_gym.agents.base import Agent, StepInfo


class RandomAgent(Agent):
    """A random valid action at every step (see the module docstring); needs no LLM.

    Args:
        adapter: ``"webshop"``, ``"wikihow"``, ``"textworld"``, a gym id or an :class:`EnvAdapter`.
        seed: the generator's seed (the runner re-seeds it per episode through :meth:`reseed`).
    """

    name = "random"
    uses_llm = False

    def __init__(self, adapter: "str | EnvAdapter" = "webshop", *, seed: int = 0) -> None:
        super().__init__()
        self.adapter = get_adapter(adapter)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        self.last_step = StepInfo()
        self.adapter.begin_episode(obs, info or {})

    def act(self, obs: str, info: dict[str, Any]) -> str:
        info = info or {}
        action = self.adapter.fallback(obs, info, "random_valid", self.rng)
        self.stats.steps += 1
        self.last_step = StepInfo(action=action, reason="random valid action")
        return action

    def observe(self, action: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        self.stats.episodes += int(bool(terminated or truncated))
