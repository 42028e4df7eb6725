"""Building what episodes are played with: the LLM, the env, the memories and the agents of a run.

One :class:`Builder` per :class:`~rlem_gym.benchmarks.episode.EpisodeContext` (so one per process
that plays episodes) builds from the run's :class:`~rlem_gym.benchmarks.config.BenchConfig`: the
env's matcher once, then memories with it, and agents by registry
(:data:`rlem_gym.agents.AGENTS`): each agent class says which settings it takes from the run
(:meth:`~rlem_gym.agents.base.Agent.run_settings`), its row's parsed label adds its own
(:class:`~rlem_gym.agents.variants.AgentVariant`), then ``--agent-kwargs`` by name and by label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rlem_gym.agents.variants import AgentVariant, parse_variant
from rlem_gym.benchmarks.config import BenchConfig, ConfigError

if TYPE_CHECKING:
    from rlem_gym.agents.base import Agent
    from rlem_gym.llm.base import LLM
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import Matcher

#: a factory that builds the LLM inside whichever process runs episodes
LLMFactory = Callable[[], "LLM"]


def default_llm_factory(cfg: BenchConfig) -> LLMFactory:
    """A picklable factory that builds ``cfg.llm`` with :func:`rlem_gym.llm.make_llm` and ``cfg.llm_kwargs``."""
    return SpecFactory(cfg.llm, dict(cfg.llm_kwargs))


@dataclass(frozen=True)
class SpecFactory:
    """Builds the LLM of a spec with keyword arguments (picklable, for workers and Ray actors)."""

    spec: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> "LLM":
        from rlem_gym.llm import make_llm

        try:
            return make_llm(self.spec, **self.kwargs)
        except TypeError as exc:  # a keyword the backend does not take: the user's --llm-kwargs
            if self.kwargs and "keyword argument" in str(exc):
                raise ConfigError(
                    f"--llm-kwargs {json.dumps(self.kwargs)} does not fit the backend of "
                    f"{self.spec or 'smollm2'!r}: {exc}"
                ) from None
            raise


def uses_llm(variant: "AgentVariant | str") -> bool:
    """Whether an agent variant (or label) calls the LLM (heuristic and oracle do not)."""
    from rlem_gym.agents import AGENTS

    name = variant.name if isinstance(variant, AgentVariant) else parse_variant(variant).name
    return bool(getattr(AGENTS[name], "uses_llm", True))


def memory_slot(agent: str, seed: int) -> str:
    """The key of a Rememberer variant's test memory in ``memory_paths``."""
    return f"{agent}#s{seed}"


def memory_saved(path: str | Path) -> bool:
    """Whether a complete memory save exists at ``path`` (its manifest is written last)."""
    return (Path(path) / "MANIFEST.json").is_file()


def memory_settings(cfg: BenchConfig, variant: AgentVariant | None = None) -> dict[str, Any]:
    """The memory's constructor settings: the run's, with a variant's (e.g. ``n_step=1``) on top."""
    settings = {
        "capacity": cfg.capacity,
        "action_capacity": cfg.action_capacity,
        "n_step": cfg.n_step,
        "gamma": cfg.gamma,
        "update_mode": cfg.update_mode,
        "lr": cfg.lr,
        "double_q": cfg.double_q,
    }
    if variant is not None:
        settings.update(variant.memory_settings)
    return settings


class Builder:
    """Builds the envs, memories and agents of one run config; the env's matcher is made once."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self._matcher: "Matcher | None" = None

    @property
    def matcher(self) -> "Matcher":
        """The env's memory similarity (for WebShop it holds the sentence embedder): made once."""
        if self._matcher is None:
            from rlem_gym.agents.adapters import get_adapter

            self._matcher = get_adapter(self.cfg.env).make_matcher()
        return self._matcher

    def env(self, split_kwargs: dict[str, Any]) -> Any:
        """``gym.make`` of the configured env with the split's kwargs, the step cap and env_kwargs."""
        import gymnasium as gym

        import rlem_gym  # noqa: F401  (registers the ids)

        cfg = self.cfg
        kwargs: dict[str, Any] = {"max_steps": cfg.max_steps}
        if cfg.env == "webshop":
            kwargs["shown_results"] = cfg.shown_results
        kwargs.update(split_kwargs)
        kwargs.update(cfg.env_kwargs)
        return gym.make(cfg.env_id, max_episode_steps=cfg.max_steps, **kwargs)

    def new_memory(self, seed: int, variant: AgentVariant | None = None) -> "ExperienceMemory":
        """An empty experience memory with the configured (and the variant's) capacities and Q-learning settings."""
        from rlem_gym.memory import ExperienceMemory

        return ExperienceMemory(self.matcher, **memory_settings(self.cfg, variant), seed=seed)

    def initial_memory(self, seed: int, variant: AgentVariant | None = None) -> "ExperienceMemory":
        """A Rememberer variant's memory before training: its ``init``, else ``--init-memory`` (a pool
        id or YAML file, or a saved memory), else empty."""
        from rlem_gym.agents.pools import import_pool, is_pool_spec

        cfg = self.cfg
        init = variant.get("init") if variant is not None else None
        spec = str(init) if init is not None else cfg.init_memory
        if not spec:
            return self.new_memory(seed, variant)
        if is_pool_spec(spec):
            mode = str(cfg.env_kwargs.get("observation_mode", "text"))
            return import_pool(
                spec, self.matcher, env=cfg.env, observation_mode=mode, **memory_settings(cfg, variant), seed=seed
            )
        from rlem_gym.memory import ExperienceMemory

        if not memory_saved(spec):
            raise ConfigError(f"--init-memory {spec} is not a memory saved by rlem-gym (no MANIFEST.json) nor a pool")
        overrides = variant.memory_settings if variant is not None else {}
        return ExperienceMemory.load(str(spec), self.matcher, **overrides)

    def load_memory(self, path: str | Path) -> "ExperienceMemory":
        """Load a saved memory with this env's matcher."""
        from rlem_gym.memory import ExperienceMemory

        return ExperienceMemory.load(str(path), self.matcher)

    def agent(self, variant: AgentVariant, llm: "LLM | None", memory: Any = None) -> "Agent":
        """Build agent ``variant`` by registry: its class's :meth:`~rlem_gym.agents.base.Agent.run_settings`,
        the variant's settings, then ``agent_kwargs`` by name and by label. An agent that needs no LLM
        (heuristic, oracle, random) gets none."""
        from rlem_gym.agents import AGENTS, make_agent

        cls = AGENTS[variant.name]
        if not getattr(cls, "uses_llm", True):
            llm = None
        kwargs = cls.run_settings(self.cfg, variant)
        kwargs.update(variant.agent_settings)
        kwargs.update(self.cfg.agent_kwargs.get(variant.name, {}))
        if variant.label != variant.name:
            kwargs.update(self.cfg.agent_kwargs.get(variant.label, {}))
        return make_agent(variant.name, llm, self.cfg.env, memory=memory, **kwargs)
