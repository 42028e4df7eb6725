"""The ReAct baseline (Yao et al. 2022): one worked example trajectory, then think/act lines.

The prompt is the env's ReAct preamble, one example trajectory written over real data (a WebShop
episode over catalog products, or a wikiHow episode over real screens), then the current
episode as a transcript::

    <first observation>
    Action: search[...]
    Observation:
    <page>
    Action: think[...]
    Observation: OK.
    Action: click[...]

``think[...]`` lines do not touch the env: within one :meth:`ReActAgent.act` call the agent loops
think -> act (at most ``max_thinks`` thoughts), counting every LLM call, until the model names an
action. An action that is not valid on the current page, or no action at all, becomes a counted
fallback (the adapter's policy). The transcript is cut from the start to fit the context window.

How much of the episode the prompt shows is the ``history`` setting:

- ``"last"`` (the default, used in the study): the first observation (it states the task) and the
  current observation in full; every earlier step as its action only, its page replaced by
  ``Observation: (omitted)`` and its thoughts left out. This is the input the Rememberer paper
  gives its agents (the task, the last actions, the current screen), and it bounds the prompt: on
  WikiHow, step 15 costs at most head + first screen + 14 short action lines + one screen + the
  current step's thoughts (about 2.6k Qwen2.5 tokens, against up to 15k with the full transcript).
- ``"full"``: the original ReAct transcript, every page and thought of the episode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rlem_gym.advice import parse_react_line
from rlem_gym.agents.adapters import EnvAdapter
from rlem_gym.agents.base import StepInfo
from rlem_gym.agents.llm_agent import LLMAgent
from rlem_gym.llm.constraint import ActionConstraint, merge
from rlem_gym.prompts import DEFAULT_MARGIN_TOKENS, build_react_prompt
from rlem_gym.trajectory import LAST_ACTIONS

if TYPE_CHECKING:
    from rlem_gym.llm.base import LLM

DEFAULT_STOP: tuple[str, ...] = ("\nObservation", "\n\n")
#: a thought, as constrained decoding allows it in the ``Action:`` slot
THINK_CONSTRAINT = ActionConstraint((), (("think[", "]"),), forbid="[")
#: the ``history`` settings: the bounded transcript (the study's) and the original full one
REACT_HISTORIES: tuple[str, ...] = ("last", "full")
#: what stands in for an earlier page in the bounded (``history="last"``) transcript
OMITTED_OBSERVATION = "Observation: (omitted)"

# kinds of transcript entries
_FIRST, _OBS, _ACT, _THINK = "first", "obs", "act", "think"


def check_react_history(history: str) -> str:
    """Validate a ReAct ``history`` setting; raise ValueError naming the valid ones."""
    if history not in REACT_HISTORIES:
        raise ValueError(f"unknown ReAct history {history!r}: use one of {', '.join(REACT_HISTORIES)}")
    return history


class ReActAgent(LLMAgent):
    """ReAct: think/act lines after one example trajectory; no memory.

    Args:
        llm: any :class:`rlem_gym.llm.LLM`.
        adapter: ``"webshop"``, ``"wikihow"`` or an :class:`EnvAdapter`.
        max_thinks: thoughts allowed per step before the agent insists on an action.
        fallback: ``"first_valid"``, ``"random_valid"`` or ``"noop"``.
        example: replace the adapter's example trajectory (same transcript format).
        history: ``"last"`` (first and current observation in full, earlier steps as actions only)
            or ``"full"`` (every page and thought); see the module docstring.
        action_decoding: ``"free"``, ``"constrained"`` or ``"scored"``: the ``Action:`` line is one
            action valid on the page, or (while thoughts are allowed) ``think[...]``; see
            :mod:`rlem_gym.agents.llm_agent`.
    """

    name = "react"

    @classmethod
    def run_settings(cls, cfg: Any, variant: Any) -> dict[str, Any]:
        """The run's generation settings and prompt history (see :meth:`Agent.run_settings`)."""
        return {**super().run_settings(cfg, variant), "history": cfg.react_history}

    def __init__(
        self,
        llm: "LLM",
        adapter: "str | EnvAdapter" = "webshop",
        *,
        max_thinks: int = 2,
        fallback: str = "first_valid",
        max_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] | None = DEFAULT_STOP,
        seed: int = 0,
        margin: int = DEFAULT_MARGIN_TOKENS,
        example: str | None = None,
        history: str = "last",
        action_decoding: str = "constrained",
    ) -> None:
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
        )
        self.max_thinks = max(0, int(max_thinks))
        self.history = check_react_history(history)
        example = self.adapter.react_example() if example is None else example
        self.head = f"{self.adapter.react_preamble}\n\n{example}\n\nNow the new episode."
        self._transcript: list[tuple[str, str]] = []  # (kind, text) entries of the episode
        self._actions: list[str] = []

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        """Start a new transcript from the first observation."""
        self.adapter.begin_episode(obs, info or {})
        self._transcript = [(_FIRST, self.adapter.react_observation(obs, info or {}, first=True))]
        self._actions = []
        self.last_step = StepInfo()

    def history_text(self) -> str:
        """The episode so far as the prompt shows it under this agent's ``history`` setting."""
        entries = self._transcript
        if self.history == "last":
            last_obs = max((i for i, (kind, _) in enumerate(entries) if kind in (_FIRST, _OBS)), default=0)
            shown = []
            for i, (kind, text) in enumerate(entries):
                if i >= last_obs or kind in (_FIRST, _ACT):
                    shown.append((kind, text))
                elif kind == _OBS:
                    shown.append((kind, OMITTED_OBSERVATION))
                # an earlier step's thoughts are left out
            entries = shown
        return "\n".join(text for _, text in entries) + "\n"

    def act(self, obs: str, info: dict[str, Any]) -> str:
        """Think (bounded) then act; returns a valid action or a counted fallback."""
        info = info or {}
        if not self._transcript:
            self.reset(obs, info)
        elif self._actions:  # the first observation is already the transcript's start
            self._transcript.append((_OBS, "Observation:\n" + self.adapter.react_observation(obs, info, first=False)))

        budget = self.prompt_budget()
        thoughts: list[str] = []
        outputs: list[str] = []
        action, why, prompt = None, "", ""
        prompt_tokens = completion_tokens = cached_tokens = 0
        latency = 0.0
        for call in range(self.max_thinks + 1):
            # the reply is forced to start with "Action:" (the prompt's response_prefix)
            built = build_react_prompt(self.llm, head=self.head, history=self.history_text(), budget=budget)
            prompt = built.text
            completion = self.complete_reply(
                built, self._constraint(info, may_think=call < self.max_thinks), rest=False, seed_offset=call
            )
            prompt_tokens += completion.prompt_tokens
            completion_tokens += completion.completion_tokens
            cached_tokens += completion.cached_tokens
            latency += completion.latency_s
            outputs.append(completion.text)
            line = parse_react_line(built.response_prefix + completion.text, self.adapter.extract_actions)
            if line.kind == "think" and call < self.max_thinks:
                thoughts.append(line.text)
                self._transcript.append((_THINK, f"Action: think[{line.text}]\nObservation: OK."))
                continue
            if line.kind == "act":  # line.text is canonical (the adapter's extract_actions)
                if self.adapter.is_valid_canonical(line.text, info):
                    action = line.text
                else:
                    why = f"invalid action {line.text[:80]!r}"
            elif line.kind == "think":
                why = f"more than {self.max_thinks} thoughts in a row"
            else:
                why = "no action in the reply"
            break
        fallback = action is None
        if action is None:
            action = self.adapter.fallback(
                obs, info, self.fallback_policy, self.rng, recent=self._actions[-LAST_ACTIONS:]
            )
        self._transcript.append((_ACT, f"Action: {action}"))
        self._actions.append(action)
        return self.record_step(
            StepInfo(
                prompt=prompt,
                raw_output="\n".join(outputs),
                action=action,
                reason=thoughts[-1] if thoughts else "",
                parsed=list(thoughts),
                fallback=fallback,
                fallback_reason=why if fallback else "",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_s=latency,
                cached_tokens=cached_tokens,
            )
        )

    def _constraint(self, info: dict[str, Any], may_think: bool) -> "ActionConstraint | None":
        """Constrained mode: the page's valid actions (and ``think[...]`` while thoughts are allowed), after a space."""
        constraint = self.action_constraint(info)
        if constraint is None:
            return None
        if may_think:
            constraint = merge([constraint, THINK_CONSTRAINT])
        return constraint.prefixed(" ")

    def observe(self, action: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        """ReAct keeps no memory; the next observation arrives with the next ``act``."""
        self.episode_over(terminated, truncated)
