"""The paper's initial experience pools by id: ``webshop:E0`` ... as a starting memory or as fixed exemplars.

The Rememberer paper never starts from an empty memory: it starts from a small annotated pool
(experience sets E0, E1, E2). rlem-gym ships the official pools as package data (with their
license and provenance in ``envs/<env>/data/pools/SOURCE.md``) and names them by id:

==================  ===========================================  =========
id                  file                                         records
==================  ===========================================  =========
``webshop:E0``      ``init_pool.wq.yaml`` (the official launch)  4
``webshop:E1``      ``init_pool2.wq.yaml``                       4
``webshop:E2``      ``init_pool3.wq.yaml``                       4
``wikihow:init``    ``init_pool.q.yaml`` (the official launch)   2
``wikihow:init2``   ... ``wikihow:init6``: the other init pools  2 each
``wikihow:annotated`` ``annotated_pool-auto.q.yaml``             38
==================  ===========================================  =========

(``wikihow:E0`` is an alias of ``wikihow:init``.) A pool becomes

- a memory: :func:`import_pool` (the Rememberer's ``--init-memory``), or
- fixed exemplars: :func:`pool_exemplars` (the static baseline's ``exemplars=pool``), so that the
  static and Rememberer rows start from the same experience and differ only by retrieval and
  learning.

Every pool is read into the env's own formats (:func:`pool_layout`): WebShop observations are
converted from the pools' site layout to the env's ``text`` (or ``text_rich``) mode, the
``Instruction:`` prefix is cut from the task, the available actions are split into a list and the
annotators' reasons are kept. In ``text`` mode a WebShop item page before and after an option was
clicked is the same text, so the last two records of each WebShop pool become one record holding
both option clicks (3 records); in ``text_rich`` mode all 4 stay apart. A path to a YAML file in
the official format is accepted wherever an id is, read with the env's layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlem_gym.agents.adapters import EnvAdapter
    from rlem_gym.memory import ExperienceMemory, Matcher
    from rlem_gym.memory.pool_import import PoolLayout
    from rlem_gym.prompts import Exemplar


@dataclass(frozen=True)
class PoolInfo:
    """One shipped pool: its id, env, package-data file and a one-line description."""

    id: str
    env: str
    file: str
    description: str

    @property
    def path(self) -> Path:
        """The shipped file (inside the installed package)."""
        return Path(str(resources.files(f"rlem_gym.envs.{self.env}").joinpath("data", "pools", self.file)))


def _pools() -> dict[str, PoolInfo]:
    rows = [
        ("webshop:E0", "webshop", "init_pool.wq.yaml", "the paper's E0, loaded by the official WebShop launch"),
        ("webshop:E1", "webshop", "init_pool2.wq.yaml", "the paper's E1 (robustness to initial experience)"),
        ("webshop:E2", "webshop", "init_pool3.wq.yaml", "the paper's E2 (robustness to initial experience)"),
        ("wikihow:init", "wikihow", "init_pool.q.yaml", "the pool loaded by the official WikiHow launch"),
        *[
            (f"wikihow:init{i}", "wikihow", f"init_pool{i}.q.yaml", "an alternative WikiHow init pool")
            for i in range(2, 7)
        ],
        (
            "wikihow:annotated",
            "wikihow",
            "annotated_pool-auto.q.yaml",
            "the larger annotated pool (38 records, 10 tasks)",
        ),
    ]
    return {pid: PoolInfo(pid, env, f, d) for pid, env, f, d in rows}


#: id -> shipped pool
POOLS: dict[str, PoolInfo] = _pools()
#: other names of shipped pools
ALIASES = {"wikihow:E0": "wikihow:init"}
#: the pool each env's official launch loads
DEFAULT_POOLS = {"webshop": "webshop:E0", "wikihow": "wikihow:init"}


def pool_info(pool_id: str) -> PoolInfo:
    """The shipped pool ``pool_id`` (case-insensitive: ``webshop:e1`` is ``webshop:E1``); ValueError lists the ids."""
    key = str(pool_id).strip().lower()
    known = {k.lower(): k for k in (*POOLS, *ALIASES)}
    if key not in known:
        raise ValueError(f"unknown pool {pool_id!r}: use one of {', '.join(POOLS)} (or a path to a pool YAML file)")
    name = known[key]
    return POOLS[ALIASES.get(name, name)]


def is_pool_spec(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a pool (a shipped id or a ``.yaml`` / ``.yml`` file), not a saved memory folder."""
    text = os.fspath(spec)
    if text.lower().endswith((".yaml", ".yml")):
        return True
    try:
        pool_info(text)
    except ValueError:
        return False
    return True


def resolve_pool(spec: str | os.PathLike[str], env: str | None = None) -> tuple[str, Path]:
    """``(env, file)`` of a pool id or a pool file path (a path needs ``env``).

    A shipped id must belong to ``env`` when ``env`` is given.
    """
    text = os.fspath(spec)
    looks_like_path = text.lower().endswith((".yaml", ".yml")) or os.sep in text or Path(text).is_file()
    if not looks_like_path:
        info = pool_info(text)
        if env is not None and info.env != env:
            raise ValueError(f"pool {info.id!r} is a {info.env} pool, not a {env} one")
        return info.env, info.path
    if env is None:
        raise ValueError(f"pool file {text!r}: say which env it belongs to (webshop or wikihow)")
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"pool file {text!r} does not exist")
    return env, path


def _webshop_task(text: str) -> str:
    """The pool's ``Instruction:<text>`` as the env's instruction."""
    text = str(text).strip()
    if text.lower().startswith("instruction:"):
        text = text[len("instruction:") :]
    return " ".join(text.split())


def pool_layout(env: str, observation_mode: str = "text") -> "PoolLayout":
    """How ``env``'s official pools are written, with converters to the env's ``observation_mode``."""
    from rlem_gym.memory.pool_import import WIKIHOW_LAYOUT, PoolLayout

    if env == "wikihow":
        return WIKIHOW_LAYOUT
    if env == "webshop":
        from rlem_gym.envs.webshop.pages import OBSERVATION_MODES, from_site_layout

        if observation_mode not in OBSERVATION_MODES:
            raise ValueError(f"observation_mode must be one of {OBSERVATION_MODES}, got {observation_mode!r}")
        return PoolLayout(
            key_fields=("observation", "task", "available_actions"),
            action_detail="reason",
            convert_observation=partial(from_site_layout, mode=observation_mode),
            convert_task=_webshop_task,
            available_separator="\n",
        )
    raise ValueError(f"no pool layout for env {env!r}: use webshop or wikihow")


def pool_items(spec: str | os.PathLike[str], env: str | None = None, observation_mode: str = "text") -> list[dict]:
    """The pool's records as the memory's insert items, in the env's formats (see :func:`pool_layout`)."""
    from rlem_gym.memory.pool_import import load_pool_yaml
    from rlem_gym.memory.pool_import import pool_items as read_items

    env, path = resolve_pool(spec, env)
    return read_items(load_pool_yaml(path), source=str(path), layout=pool_layout(env, observation_mode))


def import_pool(
    spec: str | os.PathLike[str],
    matcher: "Matcher",
    *,
    env: str | None = None,
    observation_mode: str = "text",
    memory: "ExperienceMemory | None" = None,
    **memory_kwargs: Any,
) -> "ExperienceMemory":
    """A memory holding pool ``spec`` (an id such as ``webshop:E0``, or a file with ``env``).

    ``matcher`` is the env's (``get_adapter(env).make_matcher()``); ``memory_kwargs`` configure the
    new memory (capacity, n_step, double_q, ...; with double Q both tables start from the pool).
    With ``memory`` the pool is merged into it.
    """
    from rlem_gym.memory import import_official_pool

    env, path = resolve_pool(spec, env)
    return import_official_pool(
        path, matcher, memory=memory, layout=pool_layout(env, observation_mode), **memory_kwargs
    )


def pool_exemplars(
    spec: str | os.PathLike[str],
    adapter: "str | EnvAdapter | None" = None,
    *,
    observation_mode: str = "text",
) -> list["Exemplar"]:
    """The pool's records as fixed exemplars, in pool order, with the Rememberer's advice rule
    (Encouraged = the top action if its Q > 0; Discouraged = the actions with Q <= 0)."""
    from rlem_gym.agents.adapters import get_adapter
    from rlem_gym.agents.rememberer import exemplar_from_record
    from rlem_gym.memory.records import Record

    env = None if adapter is None else get_adapter(adapter).name
    env, path = resolve_pool(spec, env)
    adapter_obj = get_adapter(env)
    out = []
    for i, it in enumerate(pool_items(path, env, observation_mode)):
        record = Record(
            id=i,
            situation=it["situation"],
            actions=dict(it["tables"][0]),
            visits=it["visits"],
        )
        out.append(replace(exemplar_from_record(record, adapter_obj), record_id=None))  # fixed: no record id
    return out
