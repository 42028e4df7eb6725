"""Agents: Rememberer, ReAct, static exemplars and the LLM-free heuristic / oracle rows (``rlem_gym.agents``).

Usable in a plain Gymnasium loop::

    import gymnasium as gym, rlem_gym
    from rlem_gym.agents import make_agent
    from rlem_gym.llm import make_llm

    env = gym.make("rlem_gym/WebShop-v0")
    agent = make_agent("rememberer", make_llm(), "webshop").train()
    obs, info = env.reset(seed=0)
    agent.reset(obs, info)
    done = False
    while not done:
        action = agent.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(action, reward, terminated, truncated, info)
        done = terminated or truncated

Any env whose observations are text and whose valid actions are listed (in ``info`` or by its
action space) works without an adapter of its own: ``make_agent("rememberer", llm, env=my_env)``
(see :mod:`rlem_gym.agents.generic_adapter`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlem_gym.agents.adapters import EnvAdapter, get_adapter, register_adapter
from rlem_gym.agents.base import Agent, AgentStats, StepInfo
from rlem_gym.agents.heuristic import HeuristicAgent
from rlem_gym.agents.oracle import OracleAgent
from rlem_gym.agents.random_agent import RandomAgent
from rlem_gym.agents.react import ReActAgent
from rlem_gym.agents.rememberer import Rememberer
from rlem_gym.agents.static import StaticExemplarAgent

if TYPE_CHECKING:
    from rlem_gym.memory.embeddings import Embedder
    from rlem_gym.llm.base import LLM

#: name -> agent class (the registry the benchmark runner and CLI use)
AGENTS: dict[str, type[Agent]] = {
    "rememberer": Rememberer,
    "react": ReActAgent,
    "static": StaticExemplarAgent,
    "heuristic": HeuristicAgent,
    "oracle": OracleAgent,
    "random": RandomAgent,
}

#: keyword arguments ``make_agent`` uses to build a memory when none is given
_MEMORY_KWARGS = (
    "capacity",
    "action_capacity",
    "n_step",
    "gamma",
    "update_mode",
    "lr",
    "double_q",
    "index",
    "eviction",
    "learning",
)


def make_agent(
    name: str,
    llm: "LLM",
    env_name: "str | EnvAdapter | None" = None,
    *,
    env: Any = None,
    memory: Any = None,
    embedder: "Embedder | None" = None,
    **kwargs: Any,
) -> Agent:
    """Build an agent by registry name for an env (``"webshop"``, ``"wikihow"`` or a gym id).

    ``env=`` takes your own env object instead: the agent then drives it through a
    :class:`~rlem_gym.agents.generic_adapter.GenericAdapter`, and the adapter's keywords
    (``actions``, ``action_names``, ``task``, ``task_keys``, ``observation``, ``obs_feature``,
    ``description``, ``preamble``, ``react_preamble``, ``react_example``, ``noop_action``) may be
    given here among the kwargs.

    For ``"rememberer"`` without ``memory=``, a fresh :class:`rlem_gym.memory.ExperienceMemory`
    is built with the env's matcher (``embedder`` defaults to the shipped MiniLM for WebShop)
    and any memory settings among the kwargs: ``capacity``, ``action_capacity``, ``n_step``
    (1 = one-step Q, None = the paper's full return), ``gamma``, ``update_mode``, ``lr``,
    ``double_q``, ``index``, ``eviction``, ``learning``. ``screen`` goes to a named env's adapter
    (WikiHow: ``"compact"`` shows each screen as short element lines). The other kwargs go to the
    agent's constructor.
    """
    key = str(name).lower()
    if key not in AGENTS:
        raise ValueError(f"unknown agent {name!r}: use one of {', '.join(sorted(AGENTS))}")
    adapter = _adapter_for(env_name, env, kwargs)
    memory_kwargs = {k: kwargs.pop(k) for k in _MEMORY_KWARGS if k in kwargs}
    if key == "rememberer":
        if memory is None:
            from rlem_gym.memory import ExperienceMemory

            memory_kwargs.setdefault("seed", kwargs.get("seed", 0))
            memory = ExperienceMemory(adapter.make_matcher(embedder), **memory_kwargs)
        elif memory_kwargs:
            raise ValueError(f"memory settings {sorted(memory_kwargs)} apply only when make_agent builds the memory")
        return Rememberer(llm, memory, adapter, **kwargs)
    if memory_kwargs or memory is not None:
        raise ValueError(
            f"the {key!r} agent has no memory: drop memory=/{', '.join(sorted(memory_kwargs)) or 'memory'}"
        )
    if not getattr(AGENTS[key], "uses_llm", True):
        return AGENTS[key](adapter, **kwargs)
    if key == "static":
        return StaticExemplarAgent(llm, kwargs.pop("exemplars", None), adapter, **kwargs)
    return ReActAgent(llm, adapter, **kwargs)


#: make_agent keywords that go to a named env's adapter (``get_adapter(name, **options)``)
NAMED_ADAPTER_OPTIONS = ("screen",)


def _adapter_for(env_name: Any, env: Any, kwargs: dict[str, Any]) -> EnvAdapter:
    """make_agent's adapter: the named one, or a GenericAdapter over ``env`` (taking its keywords out of ``kwargs``)."""
    from rlem_gym.agents.generic_adapter import ADAPTER_KEYWORDS, GenericAdapter

    adapter_kwargs = {k: kwargs.pop(k) for k in ADAPTER_KEYWORDS if k in kwargs}
    options = {k: kwargs.pop(k) for k in NAMED_ADAPTER_OPTIONS if k in kwargs}
    if env is None:
        if env_name is None:
            raise TypeError("make_agent needs an env: a name ('webshop', 'wikihow'), an EnvAdapter, or env=<your env>")
        if adapter_kwargs:
            raise ValueError(f"{', '.join(sorted(adapter_kwargs))} apply to the generic adapter: pass env=<your env>")
        return get_adapter(env_name, **options)
    if options:
        raise ValueError(f"{', '.join(sorted(options))} apply to a named env's adapter (e.g. 'wikihow'), not to env=")
    if env_name is not None:
        raise ValueError("give the env once: as make_agent's third argument or as env=, not both")
    if isinstance(env, (str, EnvAdapter)):
        raise TypeError(f"env= takes an env object; pass {env!r} as make_agent's third argument instead")
    return GenericAdapter(env, **adapter_kwargs)


__all__ = [
    "AGENTS",
    "Agent",
    "AgentStats",
    "EnvAdapter",
    "HeuristicAgent",
    "OracleAgent",
    "RandomAgent",
    "ReActAgent",
    "Rememberer",
    "StaticExemplarAgent",
    "StepInfo",
    "get_adapter",
    "make_agent",
    "register_adapter",
]
