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
``reward``; the element HTML that follows an action in a tuple is dropped; the action history
keeps its last 5 actions. The official pools carry no reason texts, so reasons are empty.
WikiHow keys are (screen, task command, instruction); ``key_fields`` maps other layouts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, TypeVar, Sequence

from rlem_gym.memory.records import ActionStats, MemoryFormatError
from rlem_gym.memory.similarity import Matcher, MemoryKey

#: the memory type built by ``factory`` (ExperienceMemory; this module does not import it: no cycle)
M = TypeVar("M")

#: the key layout of the WikiHow pools
WIKIHOW_KEY_FIELDS = ("observation", "task", "instruction")


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


def pool_items(data: dict, key_fields: Sequence[str] = WIKIHOW_KEY_FIELDS, source: str = "pool") -> list[dict]:
    """Turn a parsed pool into the memory's bulk-insert items (ordered by the pool's ``id`` when present)."""
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
                q=float(st.get("qvalue", reward)), visits=int(st.get("number", 1)), last_reward=reward, reason=""
            )
        available = fields.get("available_actions", ())
        if isinstance(available, str):
            available = (available,)
        items.append(
            {
                "order": int(value.get("id", n)) if isinstance(value.get("id", n), int) else n,
                "key": MemoryKey(
                    task=str(fields.get("task", "")),
                    observation=str(fields.get("observation", "")),
                    instruction=str(fields.get("instruction", "") or ""),
                ),
                "tables": [table],
                "visits": int(info.get("number", max((s.visits for s in table.values()), default=1))),
                "last_actions": [_action_name(a) for a in info.get("action_history", [])],
                "last_reward": float(info.get("last_reward", 0.0)),
                "total_reward": float(info.get("total_reward", 0.0)),
                "available_actions": [str(a) for a in available],
            }
        )
    items.sort(key=lambda it: it["order"])
    return items


def import_official_pool(
    path: str | os.PathLike[str],
    matcher: Matcher,
    *,
    factory: Callable[..., M],
    memory: Any = None,
    key_fields: Sequence[str] = WIKIHOW_KEY_FIELDS,
    **memory_kwargs: Any,
) -> M:
    """Read an official Rememberer pool file into an :class:`ExperienceMemory`.

    With ``memory`` the pool is merged into it (visit-weighted Q for shared keys); otherwise a new
    memory is built with ``factory(matcher, **memory_kwargs)``. Task texts are encoded in one batch.
    Called by :func:`rlem_gym.memory.import_official_pool`, which passes the memory class as ``factory``.
    """
    items = pool_items(load_pool_yaml(path), key_fields, source=str(path))
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
    try:
        target._bulk_insert(items)
    except ValueError as exc:
        raise MemoryFormatError(f"{path}: {exc}") from None
    if memory is None:
        return target
    return memory.merge(target)
