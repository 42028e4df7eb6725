"""Per-env adapters: everything env-specific the agents need, so the agents stay env-agnostic.

An adapter turns ``(obs, info)`` into the prompt parts and the memory key, reads actions out of
model text, checks them against the current page, puts them in canonical form, and picks the
counted fallback action when the model gave nothing usable. ``get_adapter("webshop")`` /
``get_adapter("wikihow")`` return the shipped ones; register your own with :func:`register_adapter`,
or let :class:`~rlem_gym.agents.generic_adapter.GenericAdapter` drive any env whose observations
are text and whose valid actions are listed.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import numpy as np

from rlem_gym.prompts import Exemplar
from rlem_gym.trajectory import Situation

if TYPE_CHECKING:
    from rlem_gym.llm.constraint import ActionConstraint
    from rlem_gym.memory.embeddings import Embedder
    from rlem_gym.memory.similarity import Matcher

#: fallback policies (what to do when the model's reply holds no valid action)
FALLBACK_POLICIES = ("first_valid", "random_valid", "noop")


_T = TypeVar("_T")


def choose(rng: np.random.Generator, options: Sequence[_T]) -> _T:
    """One of ``options`` (non-empty), drawn uniformly with ``rng``: the adapters' one random draw."""
    return options[int(rng.integers(len(options)))]


class EnvAdapter(ABC):
    """The env-specific half of an agent: prompt parts, memory key, action grammar, fallback."""

    #: the env's short name ("webshop", "wikihow")
    name: str = ""
    #: an action string the env rejects without changing state (the "noop" fallback)
    noop_action: str = "noop"
    #: the Rememberer-style preamble (action grammar + principles)
    preamble: str = ""
    #: the ReAct preamble
    react_preamble: str = ""

    # -- prompt parts -----------------------------------------------------------------------------
    @abstractmethod
    def render_input(self, inp: Situation) -> str:
        """The input block of one situation, in this env's prompt layout."""

    @abstractmethod
    def memory_key(self, obs: str, info: dict[str, Any]) -> tuple[str, str, str]:
        """The memory key ``(task, observation, instruction)`` of the current step."""

    @abstractmethod
    def available_actions(self, info: dict[str, Any]) -> tuple[str, ...]:
        """What the prompt lists as available at this step (empty when the env lists nothing)."""

    def begin_episode(self, obs: str, info: dict[str, Any]) -> None:
        """Called by the agents at each episode start (an adapter that keys on the first observation keeps it)."""

    def react_observation(self, obs: str, info: dict[str, Any], first: bool) -> str:
        """How the ReAct transcript shows an observation (``first`` = right after reset)."""
        return obs

    @abstractmethod
    def react_example(self) -> str:
        """The one worked ReAct trajectory shown before the episode."""

    @abstractmethod
    def default_exemplars(self) -> list[Exemplar]:
        """The static-exemplar baseline's default exemplars for this env."""

    # -- actions --------------------------------------------------------------------------------
    @abstractmethod
    def extract_actions(self, text: str) -> list[str]:
        """All action-shaped substrings of ``text``, in canonical form, in order."""

    def canonicalize(self, action: str) -> str | None:
        """The canonical form of ``action`` (case, spacing, brackets), or None if it is no action."""
        found = self.extract_actions(action or "")
        return found[0] if found else None

    def is_valid(self, action: str, info: dict[str, Any]) -> bool:
        """Whether ``action`` (in any form :meth:`canonicalize` accepts) is valid on the current page."""
        canon = self.canonicalize(action)
        return canon is not None and self.is_valid_canonical(canon, info)

    @abstractmethod
    def is_valid_canonical(self, action: str, info: dict[str, Any]) -> bool:
        """Whether the canonical ``action`` (as :meth:`extract_actions` writes it) is valid on the current page."""

    @abstractmethod
    def fallback_candidates(self, obs: str, info: dict[str, Any]) -> list[str]:
        """Valid actions in order of preference for a fallback."""

    def action_constraint(self, info: dict[str, Any]) -> "ActionConstraint":
        """Every action valid on the current page, in canonical form, for constrained action decoding.

        Each string the constraint allows must pass :meth:`is_valid_canonical` and come back
        unchanged from :meth:`extract_actions`. Adapters without it support free decoding only.
        """
        raise NotImplementedError(
            f"the {self.name or type(self).__name__!r} adapter has no action_constraint(): use action_decoding='free'"
        )

    def random_action(self, observation: str, available: Sequence[str], rng: np.random.Generator) -> str | None:
        """A random plausible action for a stored situation (the official random-advice mode)."""
        choices = [a for a in available if a]
        return str(choose(rng, choices)) if choices else None

    def fallback(
        self,
        obs: str,
        info: dict[str, Any],
        policy: str,
        rng: np.random.Generator,
        recent: Sequence[str] = (),
    ) -> str:
        """The action to take when the model gave no valid one; never raises.

        ``first_valid`` takes the first candidate not among the ``recent`` actions (the first
        candidate when all were recent); ``random_valid`` draws one from ``rng``; ``noop`` returns
        :attr:`noop_action`, which the env rejects without changing state.
        """
        if policy == "noop":
            return self.noop_action
        try:
            candidates = self.fallback_candidates(obs, info)
        except Exception:  # a malformed info dict must not crash an episode
            candidates = []
        if not candidates:
            return self.noop_action
        if policy == "random_valid":
            return choose(rng, candidates)
        avoid = set(recent)
        fresh = [c for c in candidates if c not in avoid]
        return (fresh or candidates)[0]

    # -- memory ---------------------------------------------------------------------------------
    @abstractmethod
    def make_matcher(self, embedder: "Embedder | None" = None, lam: float = 0.5) -> "Matcher":
        """The memory's similarity for this env (the paper's matcher)."""


def check_fallback_policy(policy: str) -> str:
    """Validate a fallback policy name; raise ValueError with the valid choices."""
    if policy not in FALLBACK_POLICIES:
        raise ValueError(f"unknown fallback policy {policy!r}: use one of {', '.join(FALLBACK_POLICIES)}")
    return policy


_ADAPTERS: dict[str, str | Callable[[], EnvAdapter]] = {
    "webshop": "rlem_gym.agents.webshop_adapter:WebShopAdapter",
    "wikihow": "rlem_gym.agents.wikihow_adapter:WikiHowAdapter",
    "textworld": "rlem_gym.agents.textworld_adapter:textworld_adapter",
}
#: the adapter an env object gets (loaded on first use, like the named ones)
_GENERIC_ADAPTER = "rlem_gym.agents.generic_adapter:GenericAdapter"


def _load(factory: str | Callable[..., EnvAdapter]) -> Callable[..., EnvAdapter]:
    """A registry entry as a callable: ``"module:Class"`` strings are imported."""
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        return getattr(importlib.import_module(module), attr)
    return factory


def register_adapter(name: str, factory: str | Callable[[], EnvAdapter]) -> None:
    """Make ``get_adapter(name)`` return ``factory()`` (a callable or a ``"module:Class"`` string)."""
    _ADAPTERS[name.lower()] = factory


def get_adapter(name: Any, **options: Any) -> EnvAdapter:
    """The adapter for an env name (``"webshop"``, ``"wikihow"``, or a gym id); adapters pass through.

    ``options`` go to a named adapter's constructor (e.g. ``get_adapter("wikihow", screen="compact")``);
    an adapter that does not take one raises a ValueError that names it. An env object (anything
    with ``step`` and ``reset``) gets a :class:`~rlem_gym.agents.generic_adapter.GenericAdapter`.
    """
    if isinstance(name, EnvAdapter) or (
        not isinstance(name, str) and callable(getattr(name, "step", None)) and callable(getattr(name, "reset", None))
    ):
        if options:
            raise ValueError(
                f"adapter options ({', '.join(sorted(options))}) apply to an adapter given by env name only"
            )
        return name if isinstance(name, EnvAdapter) else _load(_GENERIC_ADAPTER)(name)
    key = str(name).lower()
    if key.startswith("rlem_gym/"):
        key = key.split("/", 1)[1].split("-", 1)[0]
    factory = _ADAPTERS.get(key)
    if factory is None:
        raise ValueError(f"no adapter for env {name!r}: use one of {', '.join(sorted(_ADAPTERS))}")
    factory = _load(factory)
    if options:
        accepted = inspect.signature(factory).parameters
        unknown = sorted(k for k in options if k not in accepted)
        if unknown:
            raise ValueError(f"the {key} adapter has no option {', '.join(unknown)}")
    return factory(**options)
