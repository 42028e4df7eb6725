"""The KV snapshot store (pure) and llama.cpp's use of it (real SmolLM2 GGUF, skipped without the extra)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from rlem_gym.llm.prefix_cache import PrefixCache, common_prefix

PREAMBLE = (
    "You are a shopping assistant. Read the goal and the page, then answer with one action. "
    "Valid actions look like search[...] or click[...]. "
) * 6


def test_common_prefix_counts_the_shared_start():
    a = np.array([1, 2, 3, 4])
    assert common_prefix(a, np.array([1, 2, 9])) == 2
    assert common_prefix(a, np.array([1, 2, 3, 4, 5])) == 4
    assert common_prefix(a, np.array([7])) == 0
    assert common_prefix(a, np.array([], dtype=int)) == 0


def test_longest_finds_the_snapshot_with_the_longest_shared_prefix():
    cache = PrefixCache(10_000)
    cache.put([1, 2, 3, 4, 5], b"a")
    cache.put([1, 2, 7, 8], b"b")
    n, snap = cache.longest([1, 2, 3, 9])
    assert (n, snap.data) == (3, b"a")
    n, snap = cache.longest([1, 2, 7, 8, 9])
    assert (n, snap.data) == (4, b"b")
    assert cache.longest([5, 5]) == (0, None)


def test_a_snapshot_that_is_a_prefix_of_a_newer_one_is_dropped_and_a_covered_one_is_not_stored():
    cache = PrefixCache(10_000)
    assert cache.put([1, 2, 3], b"short")
    assert cache.put([1, 2, 3, 4, 5], b"long")
    assert len(cache) == 1 and cache.longest([1, 2, 3])[1].data == b"long"
    assert not cache.put([1, 2, 3, 4], b"covered")  # the long one holds it already
    assert len(cache) == 1


def test_eviction_is_least_recently_used_by_bytes():
    tokens_bytes = 3 * 8  # three int64 tokens per key
    cache = PrefixCache(3 * (100 + tokens_bytes))
    for first in (1, 2, 3):
        cache.put([first, 0, 0], bytes(100))
    cache.longest([1, 0, 0])  # touch the oldest: it is now the most recent
    cache.put([4, 0, 0], bytes(100))
    kept = {int(cache.longest([k, 0, 0])[1].tokens[0]) for k in (1, 3, 4) if cache.longest([k, 0, 0])[1] is not None}
    assert kept == {1, 3, 4}
    assert cache.longest([2, 0, 0]) == (0, None)
    assert cache.nbytes <= cache.capacity_bytes
    assert not cache.put([5], bytes(10_000))  # larger than the whole cache
    with pytest.raises(ValueError, match="capacity_bytes"):
        PrefixCache(-1)


@pytest.fixture(scope="module")
def cached_gguf():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install rlem-gym[llamacpp])")
    from rlem_gym.llm import make_llm

    llm = make_llm("smollm2-gguf", prefix_cache_mb=256)
    yield llm
    llm.close()


def test_a_later_call_starts_from_an_earlier_calls_snapshot_and_answers_as_a_cold_run(cached_gguf, gguf_llm):
    llm = cached_gguf
    a = PREAMBLE + "Goal: buy a purple wool scarf. Action:"
    b = PREAMBLE + "Goal: buy black running shoes size 9. Action:"
    other = "Something else entirely, with no shared start. Answer:"
    llm.clear_prefix_cache()
    llm.reset_cache()
    llm.generate(a, max_tokens=8)
    llm.generate(other, max_tokens=4)  # the live context no longer holds the preamble
    llm.reset_cache()
    warm = llm.generate(b, max_tokens=16)
    assert warm.cached_tokens >= llm.count_tokens(PREAMBLE) - 4  # restored from a's snapshot (whole groups of 4)
    assert llm.prefix_cache.hits >= 1
    gguf_llm.reset_cache()
    cold = gguf_llm.generate(b, max_tokens=16)  # the same model without a prefix cache
    assert cold.cached_tokens == 0
    assert warm.text == cold.text
    with pytest.raises(ValueError, match="prefix_cache_mb"):
        type(llm)(llm._llm.model_path, prefix_cache_mb=-1)


def test_interleaved_episodes_answer_exactly_as_without_the_cache(cached_gguf, gguf_llm):
    """Episodes whose prompts share exemplar blocks of every length mod 4, replayed with and without snapshots."""
    blocks = [f"Example {i}: the goal was item {i}; " + "the page listed options " * (i + 1) + "\n" for i in range(5)]
    prompts = [
        [PREAMBLE + blocks[a] + blocks[b] + f"Now the goal: item {q}{'!' * q}. Action:" for a, b in steps]
        for q, steps in enumerate([[(0, 1), (1, 2)], [(0, 1), (2, 3)], [(1, 2), (0, 1)], [(2, 3), (3, 4)]])
    ]
    cached_gguf.clear_prefix_cache()
    reused = {True: 0, False: 0}
    for episode in prompts:
        for llm in (cached_gguf, gguf_llm):
            llm.reset_cache()  # as the runner does at every episode start
        for prompt in episode:
            with_cache, without = cached_gguf.generate(prompt, max_tokens=12), gguf_llm.generate(prompt, max_tokens=12)
            assert with_cache.text == without.text and with_cache.prompt_tokens == without.prompt_tokens
            reused[True] += with_cache.cached_tokens
            reused[False] += without.cached_tokens
    assert reused[True] > reused[False]
    assert cached_gguf.prefix_cache.hits >= 2
