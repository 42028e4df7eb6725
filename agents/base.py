"""The agent interface shared by the Rememberer, ReAct and static-exemplar agents.

Usable in a plain Gymnasium loop::

    agent.reset(obs, info)
    while True:
        action = agent.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(action, reward, terminated, truncated, info)
        if terminated or truncated:
            break

Agents never step envs; the benchmark runner's ``run_episode`` is the one place that does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepInfo:
    """Why the agent acted as it did at one step (``agent.last_step``)."""

    prompt: str = ""
    """The full prompt sent to the LLM."""
    raw_output: str = ""
    """The LLM's raw completion text."""
    action: str = ""
    """The action returned by ``act``."""
    reason: str = ""
    """The reason text attached to the chosen action (from the model's advice, if any)."""
    parsed: Any = None
    """The parsed model output (advice block or think/act lines)."""
    retrieved: list[Any] = field(default_factory=list)
    """The memory records retrieved for this step (Rememberer only)."""
    retrieved_ids: list[int] = field(default_factory=list)
    """Ids of the retrieved records whose exemplars are in the prompt (those dropped to fit the budget are not)."""
    fallback: bool = False
    """True when no valid action could be parsed and the fallback policy chose the action."""
    fallback_reason: str = ""
    """Why the fallback fired (empty output, invalid action, ...)."""
    prompt_tokens: int = 0
    """Prompt tokens of the step's LLM calls, summed."""
    completion_tokens: int = 0
    """Tokens the step's LLM calls generated, summed."""
    latency_s: float = 0.0
    """Wall time of the step's LLM calls, summed."""
    cached_tokens: int = 0
    """Prompt tokens the backend served from its KV cache instead of prefilling them (0 when unknown)."""
    explored: bool = False
    """True when the action was an exploration draw (the Rememberer's ``explore``), not the model's choice."""


@dataclass
class AgentStats:
    """Counters over the agent's lifetime (reset with ``stats.clear()``)."""

    steps: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: int = 0
    episodes: int = 0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.steps if self.steps else 0.0

    def clear(self) -> None:
        for name in ("steps", "llm_calls", "prompt_tokens", "completion_tokens", "fallbacks", "episodes"):
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, float]:
        return {
            "steps": self.steps,
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "fallbacks": self.fallbacks,
            "fallback_rate": self.fallback_rate,
            "episodes": self.episodes,
        }


class Agent(ABC):
    """A policy over text observations: ``reset``, ``act``, ``observe``, ``train``/``eval``."""

    name: str = "agent"

    def __init__(self) -> None:
        self.training = False
        self.last_step = StepInfo()
        self.stats = AgentStats()

    @classmethod
    def run_settings(cls, cfg: Any, variant: Any) -> dict[str, Any]:
        """The constructor keywords this agent takes from a benchmark run: ``cfg`` is the run's
        :class:`~rlem_gym.benchmarks.config.BenchConfig`, ``variant`` its row's parsed label
        (:class:`~rlem_gym.agents.variants.AgentVariant`). The runner builds every agent through this
        and the ``AGENTS`` registry; an agent that takes nothing from the run keeps the default."""
        return {}

    def train(self) -> "Agent":
        """Train mode: memory-based agents update their memory at episode end."""
        self.training = True
        return self

    def eval(self) -> "Agent":
        """Eval mode: the memory (if any) is frozen."""
        self.training = False
        return self

    @abstractmethod
    def reset(self, obs: str, info: dict[str, Any]) -> None:
        """Start an episode from the env's ``reset`` output."""

    @abstractmethod
    def act(self, obs: str, info: dict[str, Any]) -> str:
        """Return the next action string; never raises on model output."""

    @abstractmethod
    def observe(self, action: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        """Receive the outcome of ``action``; at episode end a training agent updates its memory."""
