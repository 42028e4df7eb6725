"""Playing one episode: :func:`run_episode` is the one place in rlem-gym that steps an env.

Also here, because every process that plays episodes needs them: :class:`EpisodeContext` (the LLM,
envs and agents of one process, built once by its :class:`~rlem_gym.benchmarks.build.Builder`, in
the main process, each worker process and each Ray actor), the per-episode seeding
(:func:`seed_episode`), success and normalised return (:func:`episode_success`), and the failure
record of an episode that raised.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable

from rlem_gym.agents.variants import AgentVariant
from rlem_gym.benchmarks.build import Builder, LLMFactory, memory_slot, uses_llm
from rlem_gym.benchmarks.config import BenchConfig, ConfigError
from rlem_gym.benchmarks.plan import Split, WorkItem

if TYPE_CHECKING:
    from rlem_gym.agents.base import Agent
    from rlem_gym.llm.base import LLM


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
    TextWorld: success = the quest won; the return (the game's score) is divided by its maximum.
    """
    if env_name == "textworld":
        top = float(info.get("max_score") or 0)
        return bool(info.get("won")), float(total_reward / top) if top > 0 else 0.0
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
                    "explored": bool(getattr(st, "explored", False)),
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


class EpisodeContext:
    """Everything needed to run episodes in one process: the LLM, envs and agents, built lazily.

    The main process, each local worker process and each Ray actor hold one, and its
    :class:`~rlem_gym.benchmarks.build.Builder` (``build``). Agents are cached per (agent, seed);
    the Rememberer's test-time memory is loaded from the run folder, frozen.
    """

    def __init__(
        self,
        cfg: BenchConfig,
        splits: dict[str, Split],
        llm_factory: LLMFactory,
        memory_paths: dict[str, str],
        build: Builder | None = None,
    ):
        self.cfg = cfg
        self.splits = splits
        self.llm_factory = llm_factory
        self.memory_paths = memory_paths
        self.build = build or Builder(cfg)
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
            self._envs[phase] = self.build.env(self.splits[phase].env_kwargs)
        return self._envs[phase]

    def test_agent(self, variant: "AgentVariant | str", seed: int) -> "Agent":
        """Agent ``variant`` (a work item's parsed label) for ``seed``, in eval mode; a Rememberer gets
        its frozen test memory (``memory_paths[memory_slot(label, seed)]``, else its initial memory)."""
        if not isinstance(variant, AgentVariant):  # a label named by hand (e.g. a replay script)
            variant = next(v for v in self.cfg.variants if v.label == variant)
        key = (variant.label, seed)
        if key not in self._agents:
            memory = None
            if variant.is_rememberer:
                path = self.memory_paths.get(memory_slot(variant.label, seed))
                memory = self.build.load_memory(path) if path else self.build.initial_memory(seed, variant)
            agent = self.build.agent(variant, self.llm if uses_llm(variant) else None, memory)
            agent.eval()
            self._agents[key] = agent
        return self._agents[key]

    def run_test(self, item: WorkItem, log: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        agent = self.test_agent(item.variant or item.agent, item.seed)
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


def is_llm_error(exc: BaseException) -> bool:
    from rlem_gym.llm.base import LLMError

    return isinstance(exc, LLMError)


def attempt_test(
    ctx: EpisodeContext, item: WorkItem, log: Callable[[dict[str, Any]], None] | None
) -> tuple[str, dict[str, Any]]:
    """Run one test episode: ``("ok", record)``, or ``("llm_error" | "error", failure record)``.

    A failure is reported with its traceback; the caller stops the run on an LLM error.
    """
    try:
        return "ok", ctx.run_test(item, log)
    except Exception as exc:
        return ("llm_error" if is_llm_error(exc) else "error"), failure_record(item, exc)
