"""Shared pytest fixtures. Expensive models are loaded once per test session."""

from __future__ import annotations

import importlib.util

import pytest


# ----------------------------------------------------------------------------- memory / similarity
@pytest.fixture(scope="session")
def minilm():
    """The shipped all-MiniLM-L6-v2 embedder (loaded once per session)."""
    from rlem_gym.memory.embeddings import default_embedder

    return default_embedder()


def _first_word(observation: str) -> str:
    return observation.split(maxsplit=1)[0]


@pytest.fixture(scope="session")
def page_kind():
    """A tiny page classifier for WebShopMatcher tests: the first word of the observation."""
    return _first_word


# ----------------------------------------------------------------------------- LLM backends
@pytest.fixture(scope="session", autouse=True)
def dequant_cache_dir(tmp_path_factory):
    """A fresh dequantised-weights cache for this test session (inherited by subprocesses).

    The first HF load of the shipped GGUF in the session dequantises it and fills the cache, so
    tests see that path; every later process (CLI runs, Ray workers) loads from the cache. The
    folder (about 0.5 GB) is removed at the end.
    """
    import os
    import shutil

    from rlem_gym.llm.dequant_cache import DEQUANT_CACHE_ENV

    folder = tmp_path_factory.mktemp("dequant-cache")
    old = os.environ.get(DEQUANT_CACHE_ENV)
    os.environ[DEQUANT_CACHE_ENV] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(DEQUANT_CACHE_ENV, None)
    else:
        os.environ[DEQUANT_CACHE_ENV] = old
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def hf_llm():
    """The shipped SmolLM2-135M-Instruct through HF transformers (loaded once: ~45 s on 2 cores, from the GGUF)."""
    from rlem_gym.llm import make_llm

    llm = make_llm("smollm2")
    yield llm
    llm.close()


@pytest.fixture(scope="session")
def gguf_llm():
    """The shipped SmolLM2-135M-Instruct GGUF through llama.cpp, one live context and no prefix cache
    (``test_prefix_cache.py`` covers the cache); skipped without llama-cpp-python."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install rlem-gym[llamacpp])")
    from rlem_gym.llm import make_llm

    llm = make_llm("smollm2-gguf", prefix_cache_mb=0)
    yield llm
    llm.close()
