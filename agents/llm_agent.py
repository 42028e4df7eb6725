"""What every LLM-prompting agent shares: generation settings, the fallback policy and token accounting.

:class:`LLMAgent` is the base of the Rememberer (and its static-exemplar variant) and of ReAct:
it holds the LLM, the env adapter and the generation settings, gives the prompt budget, and
makes the LLM call with the prompt's answer cue as the reply's ``response_prefix`` (so chat
models continue the cue instead of chatting), counting calls, tokens, steps, fallbacks and episodes
in ``self.stats``.

**Action decoding.** ``action_decoding="free"`` lets the model write its reply as it likes; the
agent parses it and falls back (counted) when no valid action is in it. With
``action_decoding="constrained"`` (the default: small models know what to do but often cannot
spell it; a backend that cannot constrain decodes freely, with a warning) the action slot (the Rememberer's first ``Encouraged:`` line,
ReAct's ``Action:``) is generated under the page's :class:`~rlem_gym.llm.constraint.ActionConstraint`,
so the action is always one that is valid now; the rest of the reply (reason, Discouraged list)
is then generated freely by a second call that continues after the action (its prompt is the
first call's plus the action, so the backend's KV prefix cache serves it). The second call is made
only when the reply's reason is used: ``full_reply=None`` (default) means when a Rememberer
trains (the reason is stored in memory); ``True``/``False`` force it.

``action_decoding="scored"`` (a decoding change, off by default) chooses the action slot by whole
candidates instead of token by token: when the page's valid actions are all literals, each is
scored by its log-likelihood after the prompt (:meth:`rlem_gym.llm.LLM.score`; llama.cpp) and the
most likely one is taken. Token-by-token masking commits to a first token and can be diverted by
it (a started ``click[b...`` option ending as ``click[back to search]``); scoring cannot. A page
with a free-text action (a search box, ReAct's ``think[...]``) is decoded as in ``constrained``,
and so is every page on a backend that cannot score (with a warning).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rlem_gym.agents.adapters import EnvAdapter, check_fallback_policy, get_adapter
from rlem_gym.agents.base import Agent, StepInfo
from rlem_gym.prompts import BuiltPrompt, prompt_budget

if TYPE_CHECKING:
    from rlem_gym.llm.base import LLM, Completion
    from rlem_gym.llm.constraint import ActionConstraint

#: the ``action_decoding`` modes
ACTION_DECODINGS: tuple[str, ...] = ("free", "constrained", "scored")
#: most tokens of a constrained action (a long product option or a search query fits)
ACTION_MAX_TOKENS = 96


def check_action_decoding(mode: str) -> str:
    """Validate an ``action_decoding`` setting; raise ValueError naming the valid ones."""
    if mode not in ACTION_DECODINGS:
        raise ValueError(f"unknown action_decoding {mode!r}: use one of {', '.join(ACTION_DECODINGS)}")
    return mode


def as_llm(llm: "LLM | str") -> "LLM":
    """``llm`` itself, or the model a spec string names (built with :func:`rlem_gym.llm.make_llm`).

    Raises TypeError, naming what to pass, for anything that cannot generate.
    """
    if isinstance(llm, str):
        from rlem_gym.llm import make_llm

        return make_llm(llm)
    if not callable(getattr(llm, "generate", None)):
        raise TypeError(
            f"llm must be an rlem_gym.llm.LLM or a model spec string such as 'qwen2.5-coder-0.5b', "
            f"got {type(llm).__name__}: pass make_llm(spec) or the spec itself"
        )
    return llm


def merge_completions(first: "Completion", second: "Completion") -> "Completion":
    """One step's two calls (constrained action, then the free rest) as one Completion for accounting."""
    return replace(
        second,
        text=first.text + second.text,
        prompt_tokens=first.prompt_tokens + second.prompt_tokens,
        completion_tokens=first.completion_tokens + second.completion_tokens,
        latency_s=first.latency_s + second.latency_s,
        cached_tokens=first.cached_tokens + second.cached_tokens,
    )


class LLMAgent(Agent):
    """Base of agents that prompt an LLM once or more per step.

    Args:
        llm: any :class:`rlem_gym.llm.LLM`, or a model spec string that :func:`rlem_gym.llm.make_llm`
            builds (e.g. ``"qwen2.5-coder-0.5b"``).
        adapter: ``"webshop"``, ``"wikihow"`` or an :class:`EnvAdapter`.
        fallback: ``"first_valid"``, ``"random_valid"`` or ``"noop"`` when the reply has no valid action.
        max_tokens, temperature, stop: generation settings (temperature 0 = greedy).
        seed: seeds ``self.rng`` (random fallback, random advice) and the LLM calls.
        margin: tokens kept free for the backend's chat template when fitting the prompt.
        action_decoding: ``"free"``, ``"constrained"`` or ``"scored"`` (see the module docstring).
        full_reply: in constrained mode, also generate the reply after the action (None = when
            the reason is used).
    """

    @classmethod
    def run_settings(cls, cfg: Any, variant: Any) -> dict[str, Any]:
        """The run's generation settings (see :meth:`Agent.run_settings`)."""
        return {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "action_decoding": cfg.action_decoding}

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
        action_decoding: str = "constrained",
        full_reply: bool | None = None,
    ) -> None:
        super().__init__()
        self.llm = as_llm(llm)
        self.adapter = get_adapter(adapter)
        self.fallback_policy = check_fallback_policy(fallback)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.stop = list(stop) if stop else None
        self.margin = int(margin)
        self.action_decoding = check_action_decoding(action_decoding)
        self.full_reply = None if full_reply is None else bool(full_reply)
        self._warned_unconstrained = False
        self._warned_unscored = False
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Seed ``self.rng`` (random fallback, random advice) and the LLM calls with ``seed``."""
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def prompt_budget(self) -> int:
        """Tokens a prompt (its answer cue included) may use so that the reply fits the context window."""
        return prompt_budget(self.llm, self.max_tokens, self.margin)

    @property
    def effective_action_decoding(self) -> str:
        """The mode asked for, as far as the backend supports it: ``"scored"`` needs scoring,
        ``"constrained"`` (and ``"scored"`` without scoring) needs constraints; else ``"free"``."""
        if self.action_decoding == "free" or not getattr(self.llm, "supports_constraint", False):
            return "free"
        if self.action_decoding == "scored" and getattr(self.llm, "supports_scoring", False):
            return "scored"
        return "constrained"

    def action_constraint(self, info: dict, lead: str = "") -> "ActionConstraint | None":
        """This step's constraint on the action slot (each action after ``lead``); None = free decoding.

        None in free mode, on a page with no valid action, and when the backend cannot enforce
        constraints (then a warning is given once, and the agent decodes freely).
        """
        if self.action_decoding == "free":
            return None
        if not getattr(self.llm, "supports_constraint", False):
            if not self._warned_unconstrained:
                warnings.warn(
                    f"{getattr(self.llm, 'name', 'this LLM')} cannot constrain decoding: "
                    "the agent decodes freely (action_decoding='free')",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._warned_unconstrained = True
            return None
        constraint = self.adapter.action_constraint(info)
        if constraint.empty:
            return None
        return constraint.prefixed(lead) if lead else constraint

    def complete(
        self,
        built: BuiltPrompt,
        seed_offset: int = 0,
        *,
        constraint: "ActionConstraint | None" = None,
        after: str = "",
    ) -> "Completion":
        """One LLM call on ``built`` (its cue, then ``after``, as ``response_prefix``); counts the call and its tokens.

        With a ``constraint`` the reply is one action (at most :data:`ACTION_MAX_TOKENS` tokens),
        or in ``scored`` mode the most likely of its literals (:meth:`score_action`).
        Backend failures (:class:`rlem_gym.llm.LLMError`) propagate.
        """
        if constraint is not None and self._scores(constraint):
            return self.score_action(built, constraint, after)
        completion = self.llm.generate(
            built.text,
            max_tokens=max(self.max_tokens, ACTION_MAX_TOKENS) if constraint is not None else self.max_tokens,
            stop=None if constraint is not None else self.stop,
            temperature=self.temperature,
            seed=self.seed + seed_offset,
            response_prefix=built.response_prefix + after,
            **({"constraint": constraint} if constraint is not None else {}),
        )
        self.stats.llm_calls += 1
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        return completion

    def _scores(self, constraint: "ActionConstraint") -> bool:
        """Whether this constrained slot is chosen by scoring (``scored`` mode, literals only, a backend that scores)."""
        if self.action_decoding != "scored" or constraint.templates or not constraint.literals:
            return False
        if getattr(self.llm, "supports_scoring", False):
            return True
        if not self._warned_unscored:
            warnings.warn(
                f"{getattr(self.llm, 'name', 'this LLM')} cannot score actions: "
                "the agent decodes them token by token (action_decoding='constrained')",
                RuntimeWarning,
                stacklevel=4,
            )
            self._warned_unscored = True
        return False

    def score_action(self, built: BuiltPrompt, constraint: "ActionConstraint", after: str = "") -> "Completion":
        """The most likely of the constraint's literals after the prompt (ties: the first listed), as a Completion."""
        from rlem_gym.llm.base import Completion

        literals = list(constraint.literals)
        scores = self.llm.score(built.text, literals, response_prefix=built.response_prefix + after)
        self.stats.llm_calls += 1
        self.stats.prompt_tokens += scores.prompt_tokens
        self.stats.completion_tokens += scores.scored_tokens
        return Completion(
            literals[scores.best()],
            scores.prompt_tokens,
            scores.scored_tokens,
            scores.latency_s,
            "stop",
            scores.cached_tokens,
        )

    def complete_reply(
        self, built: BuiltPrompt, constraint: "ActionConstraint | None", *, rest: bool, seed_offset: int = 0
    ) -> "Completion":
        """The step's reply: free (no ``constraint``), or the constrained action then, if ``rest``, the free rest.

        ``Completion.text`` is what follows the cue, so ``built.response_prefix + text`` parses
        as a free reply would.
        """
        if constraint is None:
            return self.complete(built, seed_offset)
        action = self.complete(built, seed_offset, constraint=constraint)
        if not rest or not constraint.matches(action.text):
            return action
        return merge_completions(action, self.complete(built, seed_offset, after=action.text))

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
