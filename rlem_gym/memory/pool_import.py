"""Import the official Rememberer YAML memory pools, so a memory can start from the paper's initial experience.

The official pools (``history-pools/*.q.yaml`` and ``annotated_pool*.yaml`` of OpenDFM/Rememberer)
map a key tuple to a record. Keys are written with the Python-specific tag ``!!python/tuple``; we
read them with ``yaml.safe_load`` semantics through a SafeLoader subclass that builds that one tag
as a plain tuple and nothing else (no ``yaml.Loader``, no arbitrary objects). Three record shapes
occur:

* ``*.q.yaml``: ``{action_dict: {(action, element_html) | action: {number, qvalue, reward}},
  other_info: {action_history, last_reward, number, total_reward}, id}``;
* ``annotated_pool-auto.yaml``: the same without ``qvalue`` and ``id``;
* ``annotated_pool.yaml``: the value is the action dict itself (``{action: {number, reward}}``).

Mapping: Q = ``qvalue`` (or the reward when the pool has none), visits = ``number``, last reward =
``reward``; the action history keeps its last 5 actions. A :class:`PoolLayout` says how one
env's pools are written:

* ``key_fields``: the key tuple's fields. WikiHow: (screen, task command, instruction); WebShop:
  (observation, ``"Instruction:"`` + instruction, available actions as newline-separated text).
* ``action_detail``: what follows the action in an action tuple. WikiHow pools put the element's
  HTML there (dropped, reasons stay empty); WebShop pools put the annotator's reason (kept).
* ``convert_observation`` / ``convert_task``: turn the pool's texts into what the env shows (the
  WebShop pools use the original site layout; the env layer supplies the converter, this module
  imports no env).
* ``available_separator``: split the available-actions text into actions.

Two records whose converted keys are equal (a WebShop item page before and after an option was
clicked looks the same in the env's ``text`` mode) become one record: their action tables are
merged (:func:`~rlem_gym.memory.records.merge_tables`), visits add up and the first record's
context is kept. A memory with double Q gets the pool in both tables, as the official launch
loads a pool twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from rlem_gym.memory.records import ActionStats, MemoryFormatError, merge_tables
from rlem_gym.memory.similarity import Matcher
from rlem_gym.trajectory import MemoryKey, Situation

#: the memory type built by ``factory`` (ExperienceMemory; this module does not import it: no cycle)
M = TypeVar("M")

#: the key layout of the WikiHow pools
WIKIHOW_KEY_FIELDS = ("observation", "task", "instruction")
#: what may follow an action in a pool's action tuple
ACTION_DETAILS = ("element", "reason")


@dataclass(frozen=True)
class PoolLayout:
    """How one env's pools are written (see the module docstring); the default is the WikiHow layout."""

    key_fields: tuple[str, ...] = WIKIHOW_KEY_FIELDS
    action_detail: str = "element"
    convert_observation: Callable[[str], str] | None = None
    convert_task: Callable[[str], str] | None = None
    available_separator: str | None = None

    def __post_init__(self) -> None:
        if self.action_detail not in ACTION_DETAILS:
            raise ValueError(f"action_detail must be one of {ACTION_DETAILS}, got {self.action_detail!r}")
        unknown = set(self.key_fields) - {"observation", "task", "instruction", "available_actions"}
        if unknown:
            raise ValueError(
                f"unknown key fields {sorted(unknown)}: use observation, task, instruction, available_actions"
            )


#: the official WikiHow pools' layout
WIKIHOW_LAYOUT = PoolLayout()


def _tuple_loader():
    import yaml

    class _PoolLoader(yaml.SafeLoader):
        """SafeLoader plus ``!!python/tuple`` built as a tuple: nothing else is allowed."""

    def _tuple(loader, node):
        return tuple(loader.construct_sequence(node, deep=True))

    _PoolLoader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)
    return _PoolLoader


def load_pool_yaml(path: str | os.PathLike[str]) -> dict:
    """Parse an official pool file into a dict (tuple keys); raises MemoryFormatError on bad input."""
    import yaml

    p = Path(path)
    try:
        with open(p, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_tuple_loader())  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise MemoryFormatError(f"cannot read the pool {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MemoryFormatError(f"{p} is not a readable YAML pool: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MemoryFormatError(f"{p} is not a Rememberer pool: expected a mapping of key tuples to records")
    return data


def _action_name(a: Any) -> str:
    if isinstance(a, (tuple, list)):
        if not a:
            raise MemoryFormatError("empty action tuple in pool")
        a = a[0]
    return str(a)


def _action_reason(a: Any, layout: PoolLayout) -> str:
    if layout.action_detail == "reason" and isinstance(a, (tuple, list)) and len(a) > 1 and a[1]:
        return " ".join(str(a[1]).split())
    return ""


def _merge_duplicates(items: list[dict]) -> list[dict]:
    """Fold items with the same key into the first (tables merged, visits summed), in order."""
    out: list[dict] = []
    first: dict[MemoryKey, dict] = {}
    for it in items:
        key = it["situation"].key
        kept = first.get(key)
        if kept is None:
            first[key] = it
            out.append(it)
            continue
        kept["tables"] = [merge_tables([kept["tables"][0], it["tables"][0]])]
        kept["visits"] += it["visits"]
        kept["merged_orders"] = [*kept.get("merged_orders", []), it["order"]]
    return out


def pool_items(
    data: dict,
    key_fields: Sequence[str] | None = None,
    source: str = "pool",
    *,
    layout: PoolLayout | None = None,
) -> list[dict]:
    """Turn a parsed pool into the memory's bulk-insert items (ordered by the pool's ``id`` when present).

    ``layout`` says how the pool is written (default :data:`WIKIHOW_LAYOUT`); ``key_fields`` alone
    overrides just the key layout. Items whose converted keys are equal are merged into the first.
    """
    if layout is None:
        layout = WIKIHOW_LAYOUT if key_fields is None else PoolLayout(key_fields=tuple(key_fields))
    elif key_fields is not None and tuple(key_fields) != layout.key_fields:
        raise ValueError("give either key_fields or a layout, not both")
    key_fields = layout.key_fields
    items = []
    for n, (raw_key, value) in enumerate(data.items()):
        if not isinstance(raw_key, tuple) or len(raw_key) != len(key_fields):
            raise MemoryFormatError(f"{source}: key #{n} is not a {len(key_fields)}-tuple {tuple(key_fields)}")
        fields = dict(zip(key_fields, raw_key))
        if not isinstance(value, dict):
            raise MemoryFormatError(f"{source}: record #{n} is not a mapping")
        action_dict = value.get("action_dict") if "action_dict" in value else value
        info = value.get("other_info") or {}
        if not isinstance(action_dict, dict) or not isinstance(info, dict):
            raise MemoryFormatError(f"{source}: record #{n} has no action_dict mapping")
        table: dict[str, ActionStats] = {}
        for raw_action, st in action_dict.items():
            if not isinstance(st, dict):
                raise MemoryFormatError(f"{source}: record #{n}: action {raw_action!r} has no statistics")
            reward = float(st.get("reward", 0.0))
            table[_action_name(raw_action)] = ActionStats(
                q=float(st.get("qvalue", reward)),
                visits=int(st.get("number", 1)),
                last_reward=reward,
                reason=_action_reason(raw_action, layout),
            )
        available = fields.get("available_actions", ())
        if isinstance(available, str):
            sep = layout.available_separator
            available = [a.strip() for a in available.split(sep) if a.strip()] if sep else (available,)
        observation = str(fields.get("observation", ""))
        task = str(fields.get("task", ""))
        try:
            if layout.convert_observation is not None:
                observation = layout.convert_observation(observation)
            if layout.convert_task is not None:
                task = layout.convert_task(task)
        except ValueError as exc:
            raise MemoryFormatError(f"{source}: record #{n} cannot be converted: {exc}") from None
        items.append(
            {
                "order": int(value.get("id", n)) if isinstance(value.get("id", n), int) else n,
                "situation": Situation(
                    task=task,
                    observation=observation,
                    instruction=str(fields.get("instruction", "") or ""),
                    last_actions=tuple(_action_name(a) for a in info.get("action_history", [])),
                    last_reward=float(info.get("last_reward", 0.0)),
                    total_reward=float(info.get("total_reward", 0.0)),
                    available_actions=tuple(str(a) for a in available),
                ),
                "tables": [table],
                "visits": int(info.get("number", max((s.visits for s in table.values()), default=1))),
            }
        )
    items.sort(key=lambda it: it["order"])
    return _merge_duplicates(items)


def import_official_pool(
    path: str | os.PathLike[str],
    matcher: Matcher,
    *,
    factory: Callable[..., M],
    memory: Any = None,
    key_fields: Sequence[str] | None = None,
    layout: PoolLayout | None = None,
    **memory_kwargs: Any,
) -> M:
    """Read an official Rememberer pool file into an :class:`ExperienceMemory`.

    With ``memory`` the pool is merged into it (visit-weighted Q for shared keys); otherwise a new
    memory is built with ``factory(matcher, **memory_kwargs)``. Task texts are encoded in one batch.
    ``layout`` / ``key_fields``: how the pool is written (default: the WikiHow layout).
    Called by :func:`rlem_gym.memory.import_official_pool`, which passes the memory class as ``factory``.
    """
    items = pool_items(load_pool_yaml(path), key_fields, source=str(path), layout=layout)
    if memory is None:
        target = factory(matcher, **memory_kwargs)
    else:
        target = factory(
            matcher,
            capacity=max(1, len(items)),
            action_capacity=memory.action_capacity,
            action_eviction=memory.action_eviction,
            double_q=memory.double_q,
        )
    if target.double_q:  # both tables start from the pool, as the official launch loads it twice
        items = [
            {**it, "tables": [it["tables"][0], {a: replace(st) for a, st in it["tables"][0].items()}]} for it in items
        ]
    try:
        target._bulk_insert(items)
    except ValueError as exc:
        raise MemoryFormatError(f"{path}: {exc}") from None
    if memory is None:
        return target
    return memory.merge(target)
