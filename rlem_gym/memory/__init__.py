"""The Rememberer's experience memory, one concern per module.

==================  ==========================================================================
module              what it holds
==================  ==========================================================================
``core``            :class:`ExperienceMemory`: insert, Q-learning update, retrieval, eviction,
                    merge; ``save``/``load`` and :func:`import_official_pool` delegate below
``records``         the data types and errors: :class:`Record`, :class:`ActionStats`,
                    :class:`Retrieved`, :func:`merge_tables`, :class:`MemoryFormatError`
``qlearning``       the RLEM targets: returns, n-step / double-Q values, update rules
``similarity``      :class:`MemoryKey` and the matchers (:class:`WebShopMatcher`,
                    :class:`WikiHowMatcher`): how similar two keys are
``embeddings``      sentence embedders for task similarity (torch loads only with a model)
``index``           the FAISS :class:`~rlem_gym.memory.index.VectorIndex` (faiss loads only
                    when an index is created)
``persistence``     save / load a memory directory: JSON + NPZ, atomic, checked
``pool_import``     read the official Rememberer YAML pools
``inspect``         browse a saved memory as text or HTML (``rlem-gym memory inspect``)
==================  ==========================================================================

Imports point one way: ``core`` uses every other module but ``inspect``; ``persistence`` and
``pool_import`` are handed the memory class to build and never import ``core``; ``records``
imports only the key type from ``similarity``. ``tests/test_layout.py`` checks that no module of
the package imports another in a cycle. The package imports no env, agent or benchmark.

>>> from rlem_gym.agents import get_adapter
>>> from rlem_gym.memory import ExperienceMemory
>>> memory = ExperienceMemory(get_adapter("wikihow").make_matcher())  # each env has its matcher
"""

from rlem_gym.memory.core import ACTION_EVICTION_POLICIES, EVICTION_POLICIES, ExperienceMemory, import_official_pool
from rlem_gym.memory.records import (
    ActionStats,
    EmbedderMismatchError,
    MemoryFormatError,
    Record,
    Retrieved,
    merge_tables,
)
from rlem_gym.memory.similarity import Matcher, MemoryKey, WebShopMatcher, WikiHowMatcher, lcs_similarity

__all__ = [
    "ACTION_EVICTION_POLICIES",
    "EVICTION_POLICIES",
    "ActionStats",
    "EmbedderMismatchError",
    "ExperienceMemory",
    "Matcher",
    "MemoryFormatError",
    "MemoryKey",
    "Record",
    "Retrieved",
    "WebShopMatcher",
    "WikiHowMatcher",
    "import_official_pool",
    "lcs_similarity",
    "merge_tables",
]
