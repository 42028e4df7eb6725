"""Planning a run: splits resolved to tasks, and every episode listed up front as a work item.

A :class:`Split` is what a ``--train-split`` / ``--test-split`` spec selects (:func:`resolve_split`);
:func:`plan` turns the config and the splits into the run's :class:`WorkItem` list, each item
``(phase, agent, seed, epoch, task)`` with its episode seed (:func:`episode_seed`, the one seeding
rule). Nothing here plays an episode: that is :mod:`rlem_gym.benchmarks.episode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rlem_gym.agents.variants import AgentVariant, label_slug
from rlem_gym.benchmarks.config import BenchConfig, ConfigError

__all__ = ["SPLIT_KWARG", "Split", "Task", "WorkItem", "episode_seed", "plan", "resolve_split"]


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
    """One episode to run: phase, agent, base seed, epoch (training) and task.

    ``agent`` is the row's canonical label; ``variant`` the label parsed once, when the config was
    validated (:attr:`~rlem_gym.benchmarks.config.BenchConfig.variants`), and built from.
    """

    phase: str
    agent: str
    seed: int
    task: Task
    epoch: int = 0
    episode_seed: int = 0
    variant: AgentVariant | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        """A file-name-safe id that is unique within the run (a variant label as its :func:`label_slug`)."""
        agent = label_slug(self.agent)
        if self.phase == "train":
            return f"train-{agent}-s{self.seed}-e{self.epoch:02d}-t{self.task.index:04d}"
        return f"test-{agent}-s{self.seed}-t{self.task.index:04d}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "agent": self.agent,
            "seed": self.seed,
            "epoch": self.epoch,
            "episode_seed": self.episode_seed,
            "task": {"index": self.task.index, "options": self.task.options, "label": self.task.label},
            "variant": None
            if self.variant is None
            else {"name": self.variant.name, "params": list(self.variant.params), "untrained": self.variant.untrained},
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
        v = d.get("variant")
        return cls(
            phase=d["phase"],
            agent=d["agent"],
            seed=d["seed"],
            task=Task(t["index"], dict(t["options"]), t["label"]),
            epoch=d["epoch"],
            episode_seed=d["episode_seed"],
            variant=None if v is None else AgentVariant(v["name"], tuple(map(tuple, v["params"])), v["untrained"]),
        )


def episode_seed(base_seed: int, index: int) -> int:
    """The one seeding rule: episode ``index`` of a phase is reset with ``base_seed + index``."""
    return int(base_seed) + int(index)


def plan(cfg: BenchConfig, train: Split | None, test: Split) -> tuple[list[WorkItem], list[WorkItem]]:
    """Every work item of the run, listed up front: (training items in run order, test items, goal-major).

    Every Rememberer variant that trains (not ``@untrained``) has its own training run, seeded
    the same way, so variants differ only by their settings.
    """
    train_items: list[WorkItem] = []
    if train is not None and cfg.epochs > 0:
        for seed in cfg.seeds:
            for variant in cfg.trained_variants:
                j = 0
                for epoch in range(cfg.epochs):
                    for task in train.tasks:
                        train_items.append(
                            WorkItem("train", variant.label, seed, task, epoch, episode_seed(seed, j), variant)
                        )
                        j += 1
    # goal-major: every agent plays goal 0, then goal 1, ...; a run stopped part-way (they take
    # hours) has paired results on its first goals for every agent. Episodes do not depend on
    # their order (fresh KV cache, frozen memory, per-goal episode seeds).
    test_items = [
        WorkItem("test", agent, seed, task, 0, episode_seed(seed, task.index), variant)
        for seed in cfg.seeds
        for task in test.tasks
        for agent, variant in zip(cfg.agents, cfg.variants)
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


def _check_slice(spec: str, sl: slice, n: int) -> None:
    """Refuse a slice that reaches past the split's ``n`` tasks (Python would silently cut it short,
    and the run would hold fewer tasks than its recorded spec says)."""
    name = spec.partition("[")[0]
    for bound in (sl.start, sl.stop):
        if bound is not None and not -n <= bound <= n:
            raise ConfigError(
                f"split {spec!r} reaches past the end of {name!r}, which has {n} tasks: "
                f"use e.g. {name}[0:{n}] or a smaller slice"
            )


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
SPLIT_KWARG = {"webshop": "split", "wikihow": "task_set", "textworld": "split"}


def resolve_split(cfg: BenchConfig, spec: str, make_env: Callable[[dict[str, Any]], Any]) -> Split:
    """Turn a split spec into the env kwargs that select it and its ordered tasks.

    Syntax: ``NAME`` or ``NAME[a:b]``: a split the env knows (WebShop ``split=``: test, train, all,
    paper_test, paper_train_S0, ...; WikiHow ``task_set=``: microcanon70, canonical178, train_S0,
    train_S1; TextWorld ``split=``: train, dev, test, each a seed range of generated games),
    sliced by position; ``goals:500-510`` or ``goals:1,5,9`` (WebShop global goal
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
        _check_slice(spec, sl, n)
        positions = positions[sl]
    if not positions:
        raise ConfigError(f"split {spec!r} selects no tasks (the split has {n})")
    tasks = tuple(Task(i, {"task_index": p}, labels[p]) for i, p in enumerate(positions))
    return Split(spec, kwargs, tasks)
