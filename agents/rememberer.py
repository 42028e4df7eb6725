"""The Rememberer (RLEM, Zhang et al. 2023): a frozen LLM plus an experience memory learned by Q-learning.

The whole decision loop reads top to bottom in :meth:`Rememberer.act` and :meth:`Rememberer.observe`:

1. **retrieve** the k most similar past situations from the memory (k = 2 in the paper);
2. **prompt**: show them as exemplars with action advice (Encouraged = the top action if its
   Q > 0, Discouraged = the actions with Q <= 0), then the new situation;
3. **generate** with the LLM, the reply forced to start with ``Encouraged:`` (``response_prefix``,
   so a chat model writes the advice block instead of chatting about the prompt);
4. **parse** the reply into advice (tolerantly; model output can be anything);
5. **choose** the first Encouraged action valid on the current page, else a counted fallback;
6. **update** (train mode, at episode end): hand the episode's steps, with the LLM's reason for
   each action, to ``memory.update``, which runs the RLEM Q-learning update.

Exploration (not in the paper; off by default): ``explore=0.2`` makes 20% of training steps take
a random valid action (the adapter's ``random_valid`` fallback draw) instead of the model's, the
model then writing only the Q estimate and reason for it; the step is stored in memory as any
other. It lets Q-learning see actions the model never proposes (on WebShop: product options).

Ablation switches: ``discouraged=False`` drops the Discouraged part of the advice;
``random_advice=True`` reproduces the official code's invented advice (see
:func:`exemplar_from_record`). One-step vs multi-step Q is a setting of the memory, not of the
agent: ``ExperienceMemory(matcher, n_step=1)`` is one-step Q-learning (bootstrap on the next
key's max Q) and ``n_step=None`` (the paper's default) the full Monte-Carlo return;
``make_agent("rememberer", ..., n_step=...)`` passes it through.

Backend failures (:class:`rlem_gym.llm.LLMError`) are raised, never turned into a fake action;
anything the model *says* is handled and never raises.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rlem_gym.advice import AdviceLine, ParsedAdvice, parse_advice
from rlem_gym.agents.adapters import EnvAdapter
from rlem_gym.agents.base import StepInfo
from rlem_gym.agents.llm_agent import LLMAgent
from rlem_gym.llm.base import Completion
from rlem_gym.prompts import (
    DEFAULT_MARGIN_TOKENS,
    Exemplar,
    build_advice_prompt,
    check_exemplar_order,
    order_exemplars,
)
from rlem_gym.trajectory import LAST_ACTIONS, Situation, Step

if TYPE_CHECKING:
    from rlem_gym.llm.base import LLM
    from rlem_gym.memory import ExperienceMemory, Record

#: when a record's invented advice is drawn (see ``Rememberer(advice_draw=...)``)
ADVICE_DRAWS: tuple[str, ...] = ("call", "episode")
#: stop strings: the model starting a new exemplar or echoing the prompt ends the advice
DEFAULT_STOP: tuple[str, ...] = ("```", "\n---", "Now the new input", "\nExample", "\n\n\n")


def exemplar_from_record(
    record: "Record",
    adapter: EnvAdapter,
    *,
    random_advice: bool = False,
    rng: np.random.Generator | None = None,
) -> Exemplar:
    """Turn a memory record into an exemplar with action advice.

    Deterministic (default): Encouraged = the top action if its Q > 0; Discouraged = every action
    with Q <= 0; only real memory is shown. ``random_advice=True`` reproduces the official code:
    when no Q > 0 exists it invents a random Encouraged action with Q drawn from [0, 0.5); when
    every Q > 0 it invents a random Discouraged action with Q 0 (both drawn from ``rng``).
    """
    ranked = record.sorted_actions()
    encouraged = [AdviceLine(a, float(s.q), s.reason) for a, s in ranked[:1] if s.q > 0]
    discouraged = [AdviceLine(a, float(s.q), s.reason) for a, s in ranked if s.q <= 0]
    if random_advice:
        rng = rng if rng is not None else np.random.default_rng(0)
        known = {a for a, _ in ranked}
        if not encouraged:
            invented = adapter.random_action(record.situation.observation, record.situation.available_actions, rng)
            if invented and invented not in known:
                encouraged.append(AdviceLine(invented, float(rng.uniform(0.0, 0.5)), ""))
        if ranked and not discouraged:
            invented = adapter.random_action(record.situation.observation, record.situation.available_actions, rng)
            if invented and invented not in known:
                discouraged.append(AdviceLine(invented, 0.0, ""))
    return Exemplar(record.situation, tuple(encouraged), tuple(discouraged), record_id=record.id)


class Rememberer(LLMAgent):
    """The Rememberer agent: retrieve -> prompt -> generate -> parse -> choose; update at episode end.

    Args:
        llm: any :class:`rlem_gym.llm.LLM` (``make_llm()`` for the default model) or a model spec string.
        memory: an :class:`rlem_gym.memory.ExperienceMemory` built with ``adapter.make_matcher()``.
        adapter: ``"webshop"``, ``"wikihow"`` or an :class:`EnvAdapter`.
        k: exemplars retrieved per step (2 in the paper).
        discouraged: show the Discouraged advice (False = the paper's ablation).
        random_advice: the official code's advice rendering (the default; the study found the 0.5B
            model needs it): a record with no positive Q shows a random valid Encouraged action,
            one with no Q <= 0 a random Discouraged one. False shows only the record's own actions.
        fallback: ``"first_valid"``, ``"random_valid"`` or ``"noop"`` when the reply has no valid action.
        max_tokens, temperature, stop: generation settings (temperature 0 = greedy).
        seed: seeds the generator used by random advice / random fallback and the LLM call.
        margin: tokens kept free for the backend's chat template when fitting the prompt.
        exemplar_order: ``"official"`` (the official code's: most similar last, next to the new
            input, numbered by rank; the default), ``"similarity"`` (most similar first) or
            ``"stable"`` (by memory record id); see :func:`rlem_gym.prompts.order_exemplars`.
        action_decoding: ``"free"``, ``"constrained"`` (the first Encouraged action is generated
            under the page's valid actions) or ``"scored"`` (the most likely whole valid action);
            see :mod:`rlem_gym.agents.llm_agent`.
        full_reply: in constrained mode, generate the reason and Discouraged list after the action
            (None = only in train mode, where the reason is stored in memory).
        advice_draw: with ``random_advice``, when a record's invented advice is drawn: ``"call"``
            (at every step, as the official code does; the default) or ``"episode"`` (once per
            record per episode, so that a record retrieved again shows the same text and the
            backend reuses its KV prefix; a method change, off by default).
        explore: the probability that a training step explores (see the module docstring); 0 in
            eval mode whatever it is set to. 0.0 (the paper's agent) draws nothing, so the other
            random draws are unchanged.
    """

    name = "rememberer"

    def __init__(
        self,
        llm: "LLM",
        memory: "ExperienceMemory | None",
        adapter: "str | EnvAdapter" = "webshop",
        *,
        k: int = 2,
        discouraged: bool = True,
        random_advice: bool = True,
        fallback: str = "first_valid",
        max_tokens: int = 128,
        temperature: float = 0.0,
        stop: Sequence[str] | None = DEFAULT_STOP,
        seed: int = 0,
        margin: int = DEFAULT_MARGIN_TOKENS,
        exemplar_order: str = "official",
        action_decoding: str = "constrained",
        full_reply: bool | None = None,
        advice_draw: str = "call",
        explore: float = 0.0,
    ) -> None:
        if not 0.0 <= float(explore) <= 1.0:
            raise ValueError(f"explore must be a probability in [0, 1], got {explore}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if advice_draw not in ADVICE_DRAWS:
            raise ValueError(f"unknown advice_draw {advice_draw!r}: use one of {', '.join(ADVICE_DRAWS)}")
        super().__init__(
            llm,
            adapter,
            fallback=fallback,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            seed=seed,
            margin=margin,
            action_decoding=action_decoding,
            full_reply=full_reply,
        )
        self.memory = memory
        self.k = int(k)
        self.discouraged = bool(discouraged)
        self.random_advice = bool(random_advice)
        self.exemplar_order = check_exemplar_order(exemplar_order)
        self.advice_draw = advice_draw
        self.explore = float(explore)
        self._drawn: dict[int, Exemplar] = {}  # record id -> its exemplar this episode (advice_draw="episode")
        self._task = ""
        self._steps: list[Step] = []
        self._pending: Step | None = None  # the step chosen by act, completed by observe
        self._last_actions: list[str] = []
        self._last_reward = 0.0
        self._total_reward = 0.0

    @classmethod
    def run_settings(cls, cfg: Any, variant: Any) -> dict[str, Any]:
        """The run's generation, retrieval and advice settings (see :meth:`Agent.run_settings`)."""
        return {
            **super().run_settings(cfg, variant),
            "k": cfg.k,
            "discouraged": cfg.discouraged,
            "random_advice": cfg.random_advice,
            "exemplar_order": cfg.exemplar_order,
        }

    def train(self) -> "Rememberer":
        """Train mode: at each episode end the memory learns from the episode (step 6).

        Raises ValueError when there is no memory to learn into (``memory=None``), instead of
        training silently on nothing. Subclasses that show fixed exemplars instead of retrieving
        (they override ``_recall``, as :class:`~rlem_gym.agents.static.StaticExemplarAgent` does)
        are non-learning baselines: for them ``train()`` only sets the mode.
        """
        if self.memory is None and type(self)._recall is Rememberer._recall:
            raise ValueError(
                "Rememberer.train() with memory=None would learn nothing: pass a memory, e.g. "
                "Rememberer(llm, ExperienceMemory(get_adapter(env).make_matcher()), env) "
                "(from rlem_gym.memory import ExperienceMemory; from rlem_gym.agents import get_adapter), "
                "or build the agent with make_agent('rememberer', llm, env), which makes the env's default memory"
            )
        return super().train()

    # ---------------------------------------------------------------------------- episode start
    def reset(self, obs: str, info: dict[str, Any]) -> None:
        """Start an episode: forget the previous episode's steps and prompt context."""
        self.adapter.begin_episode(obs, info)
        self._task = self.adapter.memory_key(obs, info)[0]
        self._drawn = {}
        self._steps = []
        self._pending = None
        self._last_actions = []
        self._last_reward = 0.0
        self._total_reward = 0.0
        self.last_step = StepInfo()

    # ---------------------------------------------------------------------------- one decision
    def act(self, obs: str, info: dict[str, Any]) -> str:
        """Choose the next action; the reasons are in ``self.last_step``."""
        info = info or {}
        task, observation, instruction = self.adapter.memory_key(obs, info)
        available = self.adapter.available_actions(info)

        # 1. retrieve: the k most similar past situations, as exemplars with action advice
        retrieved, exemplars = self._recall(task, observation, instruction)

        # 2. prompt: preamble, exemplars, the new input (fit, with the "Encouraged:" cue, to the context window)
        query = Situation(
            task=task,
            observation=observation,
            instruction=instruction,
            last_actions=tuple(self._last_actions[-LAST_ACTIONS:]),
            last_reward=self._last_reward,
            total_reward=self._total_reward,
            available_actions=available,
        )
        built = build_advice_prompt(
            self.llm,
            preamble=self.adapter.preamble,
            render_input=self.adapter.render_input,
            exemplars=exemplars,
            query=query,
            discouraged=self.discouraged,
            budget=self.prompt_budget(),
        )

        explored = self._exploration(obs, info)
        if explored is None:
            # 3. generate, the reply starting with "Encouraged:" (backend errors propagate as LLMError);
            #    constrained: the first action is one valid here, then (if the reason is used) the free rest
            completion = self.complete_reply(built, self.action_constraint(info), rest=self._wants_reason())

            # 4. parse the advice block: the cue the reply was forced to start with, then what the model wrote
            parsed = parse_advice(built.response_prefix + completion.text, self.adapter.extract_actions)

            # 5. choose: the first Encouraged action valid here, else a counted fallback
            action, reason, fallback_reason = self._choose(parsed, obs, info)
        else:  # exploring: the drawn action is given; the model writes its Q estimate and reason
            completion, parsed, reason = self._explain(built, explored)
            action, fallback_reason = explored, ""

        self._pending = Step(
            query,
            action=action,
            reward=0.0,  # known in observe
            reason="" if fallback_reason else reason,  # a fallback's label is not the model's reason
        )
        return self.record_step(
            StepInfo(
                prompt=built.text,
                raw_output=completion.text,
                action=action,
                reason=reason,
                parsed=parsed,
                retrieved=retrieved,
                retrieved_ids=[e.record_id for e in built.exemplars_used if e.record_id is not None],
                fallback=bool(fallback_reason),
                fallback_reason=fallback_reason,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                latency_s=completion.latency_s,
                cached_tokens=completion.cached_tokens,
                explored=explored is not None,
            )
        )

    def _exploration(self, obs: str, info: dict[str, Any]) -> str | None:
        """A random valid action when this training step explores (probability ``explore``), else None."""
        if not (self.training and self.explore > 0.0) or self.rng.random() >= self.explore:
            return None
        action = self.adapter.fallback(obs, info, "random_valid", self.rng)
        return None if action == self.adapter.noop_action else action

    def _explain(self, built: Any, action: str) -> tuple[Completion, ParsedAdvice, str]:
        """The model's Q estimate and reason for a given ``action`` (its reply forced to start with it).

        Without a reason to store (``full_reply=False``) no call is made and the reason is empty.
        """
        if not self._wants_reason():
            return Completion("", 0, 0, 0.0, "explore"), ParsedAdvice(), ""
        completion = self.complete(built, after=action)
        parsed = parse_advice(built.response_prefix + action + completion.text, self.adapter.extract_actions)
        reason = parsed.encouraged[0].reason if parsed.encouraged else ""
        return replace(completion, text=action + completion.text), parsed, reason

    def _wants_reason(self) -> bool:
        """Whether a constrained reply goes on after the action (``full_reply``; None = when training with a memory)."""
        if self.full_reply is not None:
            return self.full_reply
        return self.training and self.memory is not None

    def _recall(self, task: str, observation: str, instruction: str) -> tuple[list[Any], list[Exemplar]]:
        """Step 1: retrieve the top-k records (most similar first) and turn each into an exemplar.

        The exemplars carry their similarity rank and come in the prompt order ``exemplar_order``.
        """
        if self.memory is None or self.k == 0 or len(self.memory) == 0:
            return [], []
        retrieved = self.memory.retrieve(task, observation, instruction, k=self.k)
        exemplars = [replace(self._exemplar(r.record), rank=i) for i, r in enumerate(retrieved)]
        return list(retrieved), order_exemplars(exemplars, self.exemplar_order)

    def _exemplar(self, record: "Record") -> Exemplar:
        """A record as an exemplar; with ``advice_draw="episode"`` the first one drawn this episode."""
        if self.advice_draw == "episode" and record.id in self._drawn:
            return self._drawn[record.id]
        exemplar = exemplar_from_record(record, self.adapter, random_advice=self.random_advice, rng=self.rng)
        if self.advice_draw == "episode":
            self._drawn[record.id] = exemplar
        return exemplar

    def _choose(self, parsed: ParsedAdvice, obs: str, info: dict[str, Any]) -> tuple[str, str, str]:
        """Step 5: ``(action, reason, fallback_reason)``; fallback_reason is "" when the model's advice was used.

        A fallback's reason is the label ``"fallback (<policy>)"``, shown in ``last_step`` only, never stored in memory.
        """
        tried = []
        for advice in parsed.encouraged:  # parsed actions are canonical (the adapter's extract_actions)
            if self.adapter.is_valid_canonical(advice.action, info):
                return advice.action, advice.reason, ""
            tried.append(advice.action)
        if tried:
            why = f"no valid Encouraged action ({len(tried)} invalid, first: {tried[0][:80]!r})"
        elif parsed.discouraged:
            why = "only Discouraged actions in the reply"
        else:
            why = "no action in the reply"
        avoid = self._last_actions[-LAST_ACTIONS:] + [a.action for a in parsed.discouraged]
        action = self.adapter.fallback(obs, info, self.fallback_policy, self.rng, recent=avoid)
        return action, f"fallback ({self.fallback_policy})", why

    # ------------------------------------------------------------------------- outcome + update
    def observe(self, action: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        """Record the transition; at episode end in train mode, update the memory (step 6)."""
        pending = self._pending
        self._pending = None
        if pending is not None:
            reason = pending.reason if action == pending.action else ""
            self._steps.append(replace(pending, action=str(action), reward=float(reward), reason=reason))
        self._last_actions.append(str(action))
        self._last_reward = float(reward)
        self._total_reward += float(reward)
        # 6. update (train mode, at episode end): the RLEM Q-learning update over the whole episode
        if self.episode_over(terminated, truncated) and self.training and self.memory is not None and self._steps:
            self.memory.update(self._task, list(self._steps))

    @property
    def episode_steps(self) -> list[Step]:
        """The current (or just finished) episode's steps, as given to ``memory.update``."""
        return list(self._steps)
