"""Playing one episode: :func:`run_episode` is the one place in rlem-gym that steps an env.

Also here, because every process that plays episodes needs them: building the env, the memory,
the agent and the LLM from a :class:`~rlem_gym.benchmarks.config.BenchConfig`
(:class:`EpisodeContext` holds them, lazily, in the main process, each worker process and each
Ray actor), the per-episode seeding (:func:`seed_episode`), success and normalised return
(:func:`episode_success`), and the failure record of an episode that raised.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rlem_gym.benchmarks.config import BenchConfig, ConfigError
from rlem_gym.benchmarks.plan import Split, WorkItem

if TYPE_CHECKING:
    from rlem_gym.agents.base import Agent
    from rlem_gym.llm.base import LLM

#: a factory that builds the LLM inside whichever process runs episodes
LLMFactory = Callable[[], "LLM"]


class RunError(RuntimeError):
    """The run cannot go on (bad data, unreachable model, ...); the message says what to do."""


# --------------------------------------------------------------------------------------------
# the episode loop: the one place that steps an env
# --------------------------------------------------------------------------------------------
def short_hash(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text`` (observation and prompt ids in the log)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def episode_success(env_name: str, total_reward: float, info: dict[str, Any]) -> tuple[bool, float]:
    """(success, normalised return in [0, 1]) of a finished episode.

    WebShop: success = reward 1.0 at purchase, the reward is already in [0, 1]. WikiHow: success =
    every sub-goal reached; the return (one point per sub-goal) is divided by the sub-goal count.
    """
    if env_name == "wikihow":
        total = int(info.get("subgoals_total") or 0)
        done = int(info.get("subgoals_done") or 0)
        norm = (total_reward / total) if total else 0.0
        return (total > 0 and done >= total), float(norm)
    return total_reward >= 1.0 - 1e-9, float(total_reward)


def seed_episode(agent: Any, seed: int) -> None:
    """The one seeding block of an episode: the env gets ``seed`` at reset; here the agent's
    generator and LLM sampling seed, and (when training) the memory's generator, get it too.

    Re-seeding per episode makes every episode a function of its work item alone, so a resumed,
    reordered or parallel run decides exactly as an uninterrupted serial one.
    """
    import numpy as np

    reseed = getattr(agent, "reseed", None)
    if callable(reseed):
        reseed(int(seed))
    else:  # agents without ``reseed``: set the same two attributes from here
        if hasattr(agent, "seed") and not callable(agent.seed):
            agent.seed = int(seed)
        if hasattr(agent, "rng"):
            agent.rng = np.random.default_rng(seed)
    memory = getattr(agent, "memory", None)
    if memory is not None and getattr(agent, "training", False) and hasattr(memory, "rng"):
        memory.rng = np.random.default_rng(seed)


def run_episode(
    env: Any,
    agent: "Agent",
    item: WorkItem,
    *,
    env_name: str,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Play one episode of ``agent`` on ``env`` and return its completion record.

    This is the only function in rlem-gym that calls ``env.step``. Truncation comes from the
    env's TimeLimit wrapper. ``log`` receives one dict per step (the ``episodes.jsonl`` line).
    The record's LLM calls, tokens and fallbacks are the episode's change of ``agent.stats``
    (an agent may call the LLM more than once per step, e.g. ReAct's thoughts).
    Exceptions propagate; the caller decides whether they fail the episode or the run.
    """
    t0 = time.perf_counter()
    has_memory = getattr(agent, "memory", None) is not None
    copies = advised = 0
    seed_episode(agent, item.episode_seed)
    fresh_llm_cache(getattr(agent, "llm", None))
    before = _stat_counts(agent)
    obs, info = env.reset(seed=item.episode_seed, options=dict(item.task.options))
    agent.reset(obs, info)
    instruction = str(info.get("instruction", ""))
    total = 0.0
    steps = invalid = 0
    actions: list[str] = []
    terminated = truncated = False
    while not (terminated or truncated):
        act_start = time.perf_counter()
        action = agent.act(obs, info)
        act_s = time.perf_counter() - act_start
        st = agent.last_step
        next_obs, reward, terminated, truncated, next_info = env.step(action)
        reward = float(reward)
        total += reward
        steps += 1
        actions.append(action)
        error = next_info.get("last_action_error") or ""
        invalid += int(bool(error))
        encouraged = shown_encouraged(st) if has_memory else set()
        copied = bool(encouraged) and not st.fallback and action in encouraged
        advised += int(bool(encouraged))
        copies += int(copied)
        if log is not None:
            log(
                {
                    "item": item.id,
                    "phase": item.phase,
                    "agent": item.agent,
                    "seed": item.seed,
                    "epoch": item.epoch,
                    "goal": item.task.index,
                    "goal_label": item.task.label,
                    "step": steps - 1,
                    "obs_hash": short_hash(obs),
                    "prompt_hash": short_hash(st.prompt) if st.prompt else "",
                    "raw_output": st.raw_output,
                    "action": action,
                    "reward": reward,
                    "retrieved_ids": [int(r) for r in (st.retrieved_ids or [])],
                    "fallback": bool(st.fallback),
                    "copied_encouraged": copied,
                    "action_error": error,
                    "prompt_tokens": int(st.prompt_tokens),
                    "cached_tokens": int(st.cached_tokens),
                    "prefill_tokens": int(st.prompt_tokens) - int(st.cached_tokens),
                    "completion_tokens": int(st.completion_tokens),
                    "llm_s": round(float(st.latency_s), 4),
                    "act_s": round(act_s, 4),
                }
            )
        agent.observe(action, reward, terminated, truncated, next_info)
        obs, info = next_obs, next_info
    success, normalized = episode_success(env_name, total, info)
    used = {k: v - before[k] for k, v in _stat_counts(agent).items()}
    memory_fields = {"encouraged_copies": copies, "encouraged_shown_steps": advised} if has_memory else {}
    # how the episode ended, for failure analysis: WebShop's reward components and purchase,
    # WikiHow's sub-goal counts (JSON-safe copies of the final info's fields, when present)
    outcome = {k: json_safe(info[k]) for k in OUTCOME_FIELDS if info.get(k) is not None}
    return {
        **item.record_fields(),
        "episode_seed": item.episode_seed,
        "instruction": instruction,
        "return": total,
        "normalized_return": normalized,
        "success": bool(success),
        "steps": steps,
        "terminated": bool(terminated),
        "truncated": bool(truncated),
        "actions": actions,
        "invalid_actions": invalid,
        "llm_calls": used["llm_calls"],
        "prompt_tokens": used["prompt_tokens"],
        "completion_tokens": used["completion_tokens"],
        "fallbacks": used["fallbacks"],
        **memory_fields,
        **outcome,
        "wall_s": round(time.perf_counter() - t0, 3),
    }


#: final-info fields copied into the episode record (see :func:`run_episode`)
OUTCOME_FIELDS = ("reward_details", "purchased", "subgoals_done", "subgoals_total")


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars and tuples turned into plain JSON types."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def shown_encouraged(step: Any) -> set[str]:
    """The Encouraged actions of the retrieved records whose exemplars were in the step's prompt.

    The Rememberer's advice rule: a record's Encouraged action is its top action when that has
    Q > 0. ``copied_encouraged`` in the log (and ``encouraged_copies`` per episode) counts the
    steps where the model's own choice (not a fallback) was one of these.
    """
    shown = set(step.retrieved_ids or ())
    out: set[str] = set()
    for hit in step.retrieved or ():
        record = getattr(hit, "record", None)
        if record is None or record.id not in shown:
            continue
        ranked = record.sorted_actions()
        if ranked and ranked[0][1].q > 0:
            out.add(ranked[0][0])
    return out


#: the ``agent.stats`` counters a completion record reports per episode
_STAT_FIELDS = ("llm_calls", "prompt_tokens", "completion_tokens", "fallbacks")


def _stat_counts(agent: Any) -> dict[str, int]:
    """The agent's lifetime counters (:class:`~rlem_gym.agents.base.AgentStats`) now."""
    stats = agent.stats
    return {k: int(getattr(stats, k)) for k in _STAT_FIELDS}


# --------------------------------------------------------------------------------------------
# building envs, memories and agents (shared by the main process and every worker)
# --------------------------------------------------------------------------------------------
def default_llm_factory(cfg: BenchConfig) -> LLMFactory:
    """A picklable factory that builds ``cfg.llm`` with :func:`rlem_gym.llm.make_llm` and ``cfg.llm_kwargs``."""
    return _SpecFactory(cfg.llm, dict(cfg.llm_kwargs))


@dataclass(frozen=True)
class _SpecFactory:
    spec: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> "LLM":
        from rlem_gym.llm import make_llm

        try:
            return make_llm(self.spec, **self.kwargs)
        except TypeError as exc:  # a keyword the backend does not take: the user's --llm-kwargs
            if self.kwargs and "keyword argument" in str(exc):
                raise ConfigError(f"--llm-kwargs {json.dumps(self.kwargs)} does not fit the backend of "
                                  f"{self.spec or 'smollm2'!r}: {exc}") from None
            raise


def make_env(cfg: BenchConfig, split_kwargs: dict[str, Any]) -> Any:
    """``gym.make`` of the configured env with the split's kwargs, the step cap and env_kwargs."""
    import gymnasium as gym

    import rlem_gym  # noqa: F401  (registers the ids)

    kwargs: dict[str, Any] = {"max_steps": cfg.max_steps}
    if cfg.env == "webshop":
        kwargs["shown_results"] = cfg.shown_results
    kwargs.update(split_kwargs)
    kwargs.update(cfg.env_kwargs)
    return gym.make(cfg.env_id, max_episode_steps=cfg.max_steps, **kwargs)


def memory_settings(cfg: BenchConfig, variant: Any = None) -> dict[str, Any]:
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


def new_memory(cfg: BenchConfig, seed: int, variant: Any = None) -> Any:
    """An empty experience memory with the configured (and the variant's) capacities and Q-learning settings."""
    from rlem_gym.agents.adapters import get_adapter
    from rlem_gym.memory import ExperienceMemory

    matcher = get_adapter(cfg.env).make_matcher()
    return ExperienceMemory(matcher, **memory_settings(cfg, variant), seed=seed)


def init_spec(cfg: BenchConfig, variant: Any = None) -> str | None:
    """Where a Rememberer variant's initial memory comes from: its ``init``, else ``--init-memory``."""
    spec = variant.get("init") if variant is not None else None
    return str(spec) if spec is not None else cfg.init_memory


def initial_memory(cfg: BenchConfig, seed: int, variant: Any = None) -> Any:
    """A Rememberer variant's memory before training: a pool (id or YAML file), a saved memory, or empty."""
    from rlem_gym.agents.pools import import_pool, is_pool_spec

    spec = init_spec(cfg, variant)
    if not spec:
        return new_memory(cfg, seed, variant)
    if is_pool_spec(spec):
        from rlem_gym.agents.adapters import get_adapter

        mode = str(cfg.env_kwargs.get("observation_mode", "text"))
        return import_pool(spec, get_adapter(cfg.env).make_matcher(), env=cfg.env, observation_mode=mode,
                           **memory_settings(cfg, variant), seed=seed)
    from rlem_gym.agents.adapters import get_adapter
    from rlem_gym.memory import ExperienceMemory

    if not memory_saved(spec):
        raise ConfigError(f"--init-memory {spec} is not a memory saved by rlem-gym (no MANIFEST.json) nor a pool")
    overrides = variant.memory_settings if variant is not None else {}
    return ExperienceMemory.load(str(spec), get_adapter(cfg.env).make_matcher(), **overrides)


def static_exemplars(cfg: BenchConfig, variant: Any) -> Any:
    """The static agent's ``exemplars=``: a pool id/file, or None for the hand-written ones.

    ``exemplars=handwritten`` -> None; ``exemplars=pool`` -> the variant's ``init``, else
    ``--init-memory`` when it is a pool, else the env's official pool; no setting -> the pool the
    Rememberer starts from when that is a pool (the study setting), else None.
    """
    from rlem_gym.agents.pools import DEFAULT_POOLS, is_pool_spec, pool_exemplars

    mode = variant.get("exemplars")
    if mode == "handwritten":
        return None
    spec = init_spec(cfg, variant)
    if not (spec and is_pool_spec(spec)):
        if mode != "pool":
            return None
        spec = DEFAULT_POOLS[cfg.env]
    return pool_exemplars(spec, cfg.env, observation_mode=str(cfg.env_kwargs.get("observation_mode", "text")))


def memory_slot(agent: str, seed: int) -> str:
    """The key of a Rememberer variant's test memory in ``memory_paths``."""
    return f"{agent}#s{seed}"


def memory_saved(path: str | Path) -> bool:
    """Whether a complete memory save exists at ``path`` (its manifest is written last)."""
    return (Path(path) / "MANIFEST.json").is_file()


def load_memory(cfg: BenchConfig, path: str | Path) -> Any:
    """Load a saved memory with this env's matcher."""
    from rlem_gym.agents.adapters import get_adapter
    from rlem_gym.memory import ExperienceMemory

    return ExperienceMemory.load(str(path), get_adapter(cfg.env).make_matcher())


def make_bench_agent(cfg: BenchConfig, name: str, llm: "LLM | None", memory: Any = None) -> "Agent":
    """Build agent variant ``name`` (a label, e.g. ``rememberer[n_step=1]``) with the run's
    generation settings, the variant's settings and ``agent_kwargs`` (by name, then by label).

    Agents that need no LLM (heuristic, oracle) get none; the WebShop oracle gets the env's
    ``data_dir`` / ``goals`` / ``num_products`` so that it knows the same goals.
    """
    from rlem_gym.agents import AGENTS, make_agent
    from rlem_gym.agents.variants import parse_variant

    variant = parse_variant(name)
    base = variant.name
    kwargs: dict[str, Any] = {}
    if not getattr(AGENTS[base], "uses_llm", True):
        llm = None
        if base == "oracle" and cfg.env == "webshop":
            kwargs.update({k: cfg.env_kwargs[k] for k in ("data_dir", "goals", "num_products") if k in cfg.env_kwargs})
    else:
        kwargs.update({"max_tokens": cfg.max_tokens, "temperature": cfg.temperature,
                       "action_decoding": cfg.action_decoding})
    if base == "rememberer":
        kwargs.update({"memory": memory, "k": cfg.k, "discouraged": cfg.discouraged, "random_advice": cfg.random_advice,
                       "exemplar_order": cfg.exemplar_order})
    if base == "static":
        kwargs["exemplars"] = static_exemplars(cfg, variant)
    if base == "react":
        kwargs["history"] = cfg.react_history
    kwargs.update(variant.agent_settings)
    kwargs.update(cfg.agent_kwargs.get(base, {}))
    if variant.label != base:
        kwargs.update(cfg.agent_kwargs.get(variant.label, {}))
    return make_agent(base, llm, cfg.env, **kwargs)


def uses_llm(name: str) -> bool:
    """Whether agent variant ``name`` calls the LLM (heuristic and oracle do not)."""
    from rlem_gym.agents import AGENTS
    from rlem_gym.agents.variants import parse_variant

    return bool(getattr(AGENTS[parse_variant(name).name], "uses_llm", True))


class EpisodeContext:
    """Everything needed to run episodes in one process: the LLM, envs and agents, built lazily.

    The main process, each local worker process and each Ray actor hold one. Agents are cached
    per (agent, seed); the Rememberer's test-time memory is loaded from the run folder, frozen.
    """

    def __init__(self, cfg: BenchConfig, splits: dict[str, Split], llm_factory: LLMFactory, memory_paths: dict[str, str]):
        self.cfg = cfg
        self.splits = splits
        self.llm_factory = llm_factory
        self.memory_paths = memory_paths
        self._llm: "LLM | None" = None
        self._envs: dict[str, Any] = {}
        self._agents: dict[tuple[str, int], "Agent"] = {}

    @property
    def llm(self) -> "LLM":
        if self._llm is None:
            from rlem_gym.llm.base import LLMError

            try:
                self._llm = self.llm_factory()
            except (LLMError, ConfigError):
                raise
            except Exception as exc:  # any loader failure is the model's: report it in one line
                spec = self.cfg.llm or "smollm2"
                raise LLMError(f"cannot load the model {spec!r} ({type(exc).__name__}: {exc})") from exc
        return self._llm

    def env(self, phase: str) -> Any:
        if phase not in self._envs:
            self._envs[phase] = make_env(self.cfg, self.splits[phase].env_kwargs)
        return self._envs[phase]

    def test_agent(self, name: str, seed: int) -> "Agent":
        """Agent variant ``name`` for ``seed``, in eval mode; a Rememberer gets its frozen test memory
        (``memory_paths[memory_slot(name, seed)]``, else its initial memory)."""
        key = (name, seed)
        if key not in self._agents:
            from rlem_gym.agents.variants import parse_variant

            variant = parse_variant(name)
            memory = None
            if variant.is_rememberer:
                path = self.memory_paths.get(memory_slot(name, seed))
                memory = load_memory(self.cfg, path) if path else initial_memory(self.cfg, seed, variant)
            agent = make_bench_agent(self.cfg, name, self.llm if uses_llm(name) else None, memory)
            agent.eval()
            self._agents[key] = agent
        return self._agents[key]

    def run_test(self, item: WorkItem, log: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        agent = self.test_agent(item.agent, item.seed)
        return run_episode(self.env("test"), agent, item, env_name=self.cfg.env, log=log)

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def fresh_llm_cache(llm: Any) -> None:
    """Forget a backend's reused KV prefix so each episode's outputs do not depend on the one before.

    This keeps results identical whatever the order of episodes: serial, parallel or resumed. A
    llama.cpp prefix cache (``prefix_cache_mb``) keeps its snapshots, which change no output.
    """
    reset = getattr(llm, "reset_cache", None)
    if callable(reset):
        reset()


def failure_record(item: WorkItem, exc: BaseException) -> dict[str, Any]:
    """The error record of a failed episode (with its traceback)."""
    return {
        **item.record_fields(),
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def _is_llm_error(exc: BaseException) -> bool:
    from rlem_gym.llm.base import LLMError

    return isinstance(exc, LLMError)



def _attempt(
    ctx: EpisodeContext, item: WorkItem, log: Callable[[dict[str, Any]], None] | None
) -> tuple[str, dict[str, Any]]:
    """Run one test episode: ``("ok", record)``, or ``("llm_error" | "error", failure record)``.

    A failure is reported with its traceback; the caller stops the run on an LLM error.
    """
    try:
        return "ok", ctx.run_test(item, log)
    except Exception as exc:
        return ("llm_error" if _is_llm_error(exc) else "error"), failure_record(item, exc)
