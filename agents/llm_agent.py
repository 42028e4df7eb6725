"""What every LLM-prompting agent shares: generation settings, the fallback policy and token accounting.

:class:`LLMAgent` is the base of the Rememberer (and its static-exemplar variant) and of ReAct:
it holds the LLM, the env adapter and the generation settings, gives the prompt budget, and
makes the LLM call with the prompt's answer cue as the reply's ``response_prefix`` (so chat
models continue the cue instead of chatting), counting calls, tokens, steps, fallbacks and episodes
in ``self.stats``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from rlem_gym.agents.adapters import EnvAdapter, check_fallback_policy, get_adapter
from rlem_gym.agents.base import Agent, StepInfo
from rlem_gym.prompts import BuiltPrompt, prompt_budget

if TYPE_CHECKING:
    from rlem_gym.llm.base import LLM, Completion


class LLMAgent(Agent):
    """Base of agents that prompt an LLM once or more per step.

    Args:
        llm: any :class:`rlem_gym.llm.LLM`.
        adapter: ``"webshop"``, ``"wikihow"`` or an :class:`EnvAdapter`.
        fallback: ``"first_valid"``, ``"random_valid"`` or ``"noop"`` when the reply has no valid action.
        max_tokens, temperature, stop: generation settings (temperature 0 = greedy).
        seed: seeds ``self.rng`` (random fallback, random advice) and the LLM calls.
        margin: tokens kept free for the backend's chat template when fitting the prompt.
    """

    def __init__(
        self,
        llm: "LLM",
        adapter: "str | EnvAdapter",
        *,
        fallback: str,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
        seed: int,
        margin: int,
    ) -> None:
        super().__init__()
        self.llm = llm
        self.adapter = get_adapter(adapter)
        self.fallback_policy = check_fallback_policy(fallback)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.stop = list(stop) if stop else None
        self.margin = int(margin)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Seed ``self.rng`` (random fallback, random advice) and the LLM calls with ``seed``."""
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def prompt_budget(self) -> int:
        """Tokens a prompt (its answer cue included) may use so that the reply fits the context window."""
        return prompt_budget(self.llm, self.max_tokens, self.margin)

    def complete(self, built: BuiltPrompt, seed_offset: int = 0) -> "Completion":
        """One LLM call on ``built`` (its cue as ``response_prefix``); counts the call and its tokens.

        Backend failures (:class:`rlem_gym.llm.LLMError`) propagate.
        """
        completion = self.llm.generate(
            built.text,
            max_tokens=self.max_tokens,
            stop=self.stop,
            temperature=self.temperature,
            seed=self.seed + seed_offset,
            response_prefix=built.response_prefix,
        )
        self.stats.llm_calls += 1
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        return completion

    def record_step(self, step: StepInfo) -> str:
        """Count one decision (and its fallback, if ``step.fallback``), keep it as ``last_step``; returns its action."""
        self.stats.steps += 1
        self.stats.fallbacks += int(step.fallback)
        self.last_step = step
        return step.action

    def episode_over(self, terminated: bool, truncated: bool) -> bool:
        """Whether the episode ended with this transition; counts it in ``stats.episodes`` when it did."""
        done = bool(terminated or truncated)
        self.stats.episodes += int(done)
        return done
