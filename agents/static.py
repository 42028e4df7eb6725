"""The static-exemplar baseline: the Rememberer's prompt with a fixed exemplar set, no retrieval, no update.

This is the paper's comparison that isolates what the learned memory adds: the same preamble,
exemplar layout, advice blocks, parsing and fallback as :class:`Rememberer`, but every step shows
the same exemplars and nothing is learned.

The exemplars are, by ``exemplars=``:

- a pool id such as ``"webshop:E0"`` (or a pool file): the paper's initial experience, the
  records of the pool the Rememberer starts from (:func:`rlem_gym.agents.pools.pool_exemplars`),
  so that the two rows differ only by retrieval and learning. The benchmark's study setting.
- ``None``: the adapter's hand-written exemplars, written over real data (WebShop catalog
  products, real wikiHow screens).
- your own list, ``[Exemplar(...), ...]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rlem_gym.agents.adapters import EnvAdapter
from rlem_gym.agents.rememberer import Rememberer
from rlem_gym.prompts import Exemplar

if TYPE_CHECKING:
    from rlem_gym.llm.base import LLM


class StaticExemplarAgent(Rememberer):
    """Rememberer prompt format with fixed exemplars (a pool id, ``None`` = the adapter's hand-written ones, or a list)."""

    name = "static"

    def __init__(
        self,
        llm: "LLM",
        exemplars: Sequence[Exemplar] | str | None = None,
        adapter: "str | EnvAdapter" = "webshop",
        **kwargs: Any,
    ) -> None:
        kwargs.pop("memory", None)
        super().__init__(llm, None, adapter, **kwargs)
        if isinstance(exemplars, str):
            from rlem_gym.agents.pools import pool_exemplars

            chosen = pool_exemplars(exemplars, self.adapter)
        else:
            chosen = self.adapter.default_exemplars() if exemplars is None else list(exemplars)
        for ex in chosen:
            if not isinstance(ex, Exemplar):
                raise TypeError(f"exemplars must be rlem_gym.prompts.Exemplar objects, got {type(ex).__name__}")
        self.exemplars: list[Exemplar] = chosen

    @classmethod
    def run_settings(cls, cfg: Any, variant: Any) -> dict[str, Any]:
        """The run's generation settings (not the Rememberer's retrieval ones) and ``exemplars``
        (see :meth:`Agent.run_settings`): ``exemplars=handwritten`` -> None (the hand-written ones);
        ``exemplars=pool`` -> the variant's ``init``, else ``--init-memory`` when it is a pool, else
        the env's official pool; no setting -> the pool the Rememberer starts from when that is a
        pool (the study setting), else None."""
        from rlem_gym.agents.pools import DEFAULT_POOLS, is_pool_spec, pool_exemplars

        settings = super(Rememberer, cls).run_settings(cfg, variant)
        mode = variant.get("exemplars")
        init = variant.get("init")
        spec = str(init) if init is not None else cfg.init_memory
        if mode == "handwritten":
            spec = None
        elif not (spec and is_pool_spec(spec)):
            spec = DEFAULT_POOLS[cfg.env] if mode == "pool" else None
        mode_kw = str(cfg.env_kwargs.get("observation_mode", "text"))
        settings["exemplars"] = pool_exemplars(spec, cfg.env, observation_mode=mode_kw) if spec else None
        return settings

    def _recall(self, task: str, observation: str, instruction: str) -> tuple[list[Any], list[Exemplar]]:
        """No retrieval: the same exemplars at every step."""
        return [], list(self.exemplars)
