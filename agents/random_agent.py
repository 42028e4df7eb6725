"""The ``random`` reference agent: a uniformly random action among those the step lists, no LLM.

It is the chance row of a table: what an agent scores that never reads the task or the
observation but never writes an invalid action either. Any env whose adapter lists the valid
actions (``info["available_actions"]`` / ``info["admissible_commands"]`` through the generic
adapter, WebShop's clickables, ...) works. A step that lists nothing sends the adapter's first
fallback candidate. Each episode's draws are a function of the episode's seed alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlem_gym.agents.adapters import EnvAdapter, choose, get_adapter
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
        listed = [a for a in self.adapter.available_actions(info) if a]
        if listed:
            action, reason = str(choose(self.rng, listed)), f"random: 1 of {len(listed)} listed actions"
        else:
            candidates = self.adapter.fallback_candidates(obs, info)
            if not candidates:
                raise ValueError("the random agent found no listed action and no fallback candidate at this step")
            action, reason = str(candidates[0]), "random: no listed action; the first fallback candidate"
        self.stats.steps += 1
        self.last_step = StepInfo(action=action, reason=reason)
        return action

    def observe(self, action: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        self.stats.episodes += int(bool(terminated or truncated))
