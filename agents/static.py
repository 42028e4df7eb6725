"""The static-exemplar baseline: the Rememberer's prompt with a fixed exemplar set, no retrieval, no update.

This is the paper's comparison that isolates what the learned memory adds: the same preamble,
exemplar layout, advice blocks, parsing and fallback as :class:`Rememberer`, but every step shows
the same exemplars and nothing is learned. Each env adapter ships default exemplars written over
real data (WebShop catalog products, real wikiHow screens); pass your own as
``exemplars=[Exemplar(...), ...]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rlem_gym.agents.adapters import EnvAdapter
from rlem_gym.agents.rememberer import Rememberer
from rlem_gym.prompts import Exemplar

if TYPE_CHECKING:
    from rlem_gym.llm.base import LLM


class StaticExemplarAgent(Rememberer):
    """Rememberer prompt format with fixed exemplars (``None`` = the adapter's defaults)."""

    name = "static"

    def __init__(
        self,
        llm: "LLM",
        exemplars: Sequence[Exemplar] | None = None,
        adapter: "str | EnvAdapter" = "webshop",
        **kwargs: Any,
    ) -> None:
        kwargs.pop("memory", None)
        super().__init__(llm, None, adapter, **kwargs)
        chosen = self.adapter.default_exemplars() if exemplars is None else list(exemplars)
        for ex in chosen:
            if not isinstance(ex, Exemplar):
                raise TypeError(f"exemplars must be rlem_gym.prompts.Exemplar objects, got {type(ex).__name__}")
        self.exemplars: list[Exemplar] = chosen

    def _recall(self, task: str, observation: str, instruction: str) -> tuple[list[Any], list[Exemplar]]:
        """No retrieval: the same exemplars at every step."""
        return [], list(self.exemplars)
