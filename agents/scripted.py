"""The base of the agents that need no LLM: a scripted policy per env behind the :class:`Agent` interface.

The heuristic and oracle reference rows (:mod:`rlem_gym.agents.heuristic`,
:mod:`rlem_gym.agents.oracle`) give every results table a floor and a ceiling. They play the same
goals as the LLM agents through the same runner, so they count steps and episodes like them, but
they make no LLM call and never fall back (every action is the script's own).

A scripted agent picks its policy from a ``{env name: {policy name: policy class}}`` table (the
first policy of an env is its default; ``policy=`` picks another, e.g. ``heuristic[policy=keywords]``);
a policy has ``reset(obs, info)`` and ``act(obs, info) -> (action, reason)``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from rlem_gym.agents.adapters import EnvAdapter, get_adapter
from rlem_gym.agents.base import Agent, StepInfo


class ScriptedPolicy(Protocol):
    """What a scripted agent delegates to: one env's rule for the next action."""

    def reset(self, obs: str, info: dict[str, Any]) -> None: ...

    def act(self, obs: str, info: dict[str, Any]) -> tuple[str, str]: ...


class ScriptedAgent(Agent):
    """An LLM-free agent that delegates every decision to its env's scripted policy.

    Args:
        adapter: ``"webshop"``, ``"wikihow"``, a gym id or an :class:`EnvAdapter` (its ``name``
            selects the policy table).
        policy: the policy's name in the env's table (None = the env's first, its default).
        **policy_kwargs: passed to the policy's constructor.
    """

    #: scripted agents never call a model; the runner builds them without one
    uses_llm = False
    #: env name -> {policy name -> policy class} (the first is the default); set by each subclass
    policies: ClassVar[dict[str, dict[str, type]]] = {}

    def __init__(
        self, adapter: "str | EnvAdapter" = "webshop", *, policy: str | None = None, **policy_kwargs: Any
    ) -> None:
        super().__init__()
        self.adapter = get_adapter(adapter)
        table = self.policies.get(self.adapter.name)
        if not table:
            raise ValueError(
                f"the {self.name!r} agent has no policy for env {self.adapter.name!r}: "
                f"use one of {', '.join(sorted(self.policies))}"
            )
        self.policy_name = next(iter(table)) if policy is None else str(policy)
        if self.policy_name not in table:
            raise ValueError(
                f"the {self.name!r} agent has no policy {policy!r} for {self.adapter.name}: use one of {', '.join(table)}"
            )
        self.policy: ScriptedPolicy = table[self.policy_name](**policy_kwargs)
        self.seed = 0

    def reseed(self, seed: int) -> None:
        """Scripted policies are deterministic; the seed is only recorded."""
        self.seed = int(seed)

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        self.last_step = StepInfo()
        self.policy.reset(obs, info or {})

    def act(self, obs: str, info: dict[str, Any]) -> str:
        action, reason = self.policy.act(obs, info or {})
        self.stats.steps += 1
        self.last_step = StepInfo(action=action, reason=reason)
        return action

    def observe(self, action: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        self.stats.episodes += int(bool(terminated or truncated))
