"""The one LLM interface every backend implements, and its response type."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from rlem_gym.llm.constraint import ActionConstraint


class LLMError(RuntimeError):
    """A backend failed to produce a completion (after its retries). Never swallowed."""


@dataclass(frozen=True)
class Completion:
    """What one ``generate`` call returns."""

    text: str
    """The generated text (the stop string excluded)."""
    prompt_tokens: int
    """Tokens in the prompt as the backend counted them (after the chat template)."""
    completion_tokens: int
    """Tokens generated."""
    latency_s: float
    """Wall time of the call, seconds."""
    finish_reason: str
    """"stop" (a stop string or end of sequence), "length" (max_tokens reached) or "error"."""
    cached_tokens: int = 0
    """Prompt tokens served from a reused prefix cache (0 when the backend does not know)."""


@dataclass(frozen=True)
class Scores:
    """What one ``score`` call returns: the log-likelihood of each continuation, and its cost."""

    logprobs: tuple[float, ...]
    """Per continuation (in the order given): the sum of its tokens' log-probabilities after the prompt."""
    prompt_tokens: int
    """Tokens in the prompt (response prefix included)."""
    scored_tokens: int
    """Tokens evaluated for the continuations (shared prefixes counted once)."""
    latency_s: float
    """Wall time of the call, seconds."""
    cached_tokens: int = 0
    """Prompt tokens served from a reused prefix cache."""

    def best(self) -> int:
        """The position of the most likely continuation (the first of equals)."""
        return max(range(len(self.logprobs)), key=self.logprobs.__getitem__)


class LLM(ABC):
    """A text generator: ``generate(prompt, *, max_tokens, stop, temperature, seed, response_prefix)``.

    Chat models get their chat template applied; base models get the raw prompt.
    ``response_prefix`` prefills the reply (the assistant turn of a chat model), so a prompt's
    answer cue (``Encouraged:``, ``Action:``) is something the model continues rather than a
    user message it chats about. ``count_tokens`` and ``context_length`` let prompt builders
    stay within the window.
    """

    #: a short human-readable name, e.g. ``hf:HuggingFaceTB/SmolLM2-135M-Instruct``
    name: str = "llm"
    #: the model's context window in tokens
    context_length: int = 2048
    #: whether ``generate(..., constraint=...)`` is enforced by this backend
    supports_constraint: bool = False
    #: whether :meth:`score` is implemented (whole-action likelihood scoring)
    supports_scoring: bool = False

    @abstractmethod
    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 128,
        stop: Sequence[str] | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        response_prefix: str = "",
        constraint: "ActionConstraint | None" = None,
    ) -> Completion:
        """Complete ``prompt``; raise :class:`LLMError` on failure.

        Args:
            prompt: the user's text (chat models get it as the user turn of their template).
            max_tokens: most tokens to generate.
            stop: strings that end the reply (excluded from ``Completion.text``).
            temperature: 0 = greedy (deterministic); > 0 = sampling, reproducible with ``seed``.
            seed: sampling seed.
            response_prefix: text the reply is forced to start with: for chat models it is placed
                at the start of the assistant turn (after the chat template's generation prompt);
                for base models it is appended to the prompt. ``Completion.text`` excludes the
                prefix, and ``Completion.prompt_tokens`` includes it.
            constraint: constrained action decoding: the reply is exactly one action that the
                :class:`~rlem_gym.llm.constraint.ActionConstraint` allows, and ends there
                (``stop`` does not apply). A backend that cannot enforce it raises
                ``NotImplementedError``; check :attr:`supports_constraint` first.
        """

    def score(self, prompt: str, continuations: Sequence[str], *, response_prefix: str = "") -> Scores:
        """The log-likelihood of each continuation right after ``prompt`` and ``response_prefix``.

        A backend that cannot score raises ``NotImplementedError``; check :attr:`supports_scoring`.
        """
        raise NotImplementedError(f"{self.name} cannot score continuations (supports_scoring is False)")

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` under this model's tokenizer (approximate by default)."""
        return max(1, len(text) // 4)

    def close(self) -> None:
        """Release the model (safe to call twice)."""


def check_generate_args(max_tokens: int, temperature: float, stop: Sequence[str] | None) -> list[str]:
    """Validate the common ``generate`` arguments; returns the non-empty stop strings."""
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    return [s for s in (stop or []) if s]


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int | None:
    """Index of the earliest stop string in ``text[start:]`` (as an index into ``text``), or None.

    The earliest match wins whatever the order of ``stops``, so overlapping stop strings cut
    where the first of them begins.
    """
    best: int | None = None
    for s in stops:
        i = text.find(s, start)
        if i != -1 and (best is None or i < best):
            best = i
    return best


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token-id sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def finish_reason(value: object) -> str:
    """A backend's finish reason as ``Completion.finish_reason``: "length" stays, anything else is "stop"."""
    return "length" if value == "length" else "stop"


def chat_messages(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The message list a chat backend sends for ``prompt``: an optional system turn, then the user turn."""
    messages = [{"role": "user", "content": prompt}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def timed() -> float:
    """Monotonic clock used for ``Completion.latency_s``."""
    return time.perf_counter()


def truncate_to_tokens(llm: LLM, text: str, max_tokens: int, *, keep: str = "end") -> str:
    """Cut ``text`` to at most ``max_tokens`` tokens of ``llm``'s tokenizer.

    ``keep="end"`` drops text from the start (the paper truncates long observations from the
    start); ``keep="start"`` drops it from the end. Binary search over characters, so it works
    with any backend's ``count_tokens``.
    """
    if max_tokens <= 0:
        return ""
    if llm.count_tokens(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)  # number of characters kept
    while lo < hi:
        mid = (lo + hi + 1) // 2
        piece = text[len(text) - mid :] if keep == "end" else text[:mid]
        if llm.count_tokens(piece) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[len(text) - lo :] if keep == "end" else text[:lo]
