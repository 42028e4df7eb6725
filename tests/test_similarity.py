"""Similarity parts: normalised LCS, the two paper matchers, and the shipped MiniLM embedder."""

from __future__ import annotations

import numpy as np
import pytest

from rlem_gym.envs.wikihow.patterns import instruction_pattern
from rlem_gym.memory.similarity import MemoryKey, WebShopMatcher, WikiHowMatcher, lcs_similarity


# ----------------------------------------------------------------------------- LCS
def test_lcs_by_hand():
    # words: "a b c d" vs "a c d e" -> LCS "a c d" = 3 of max length 4
    assert lcs_similarity("a b c d", "a c d e") == pytest.approx(0.75)
    assert lcs_similarity("A B", "a b") == 1.0  # case-insensitive words
    assert lcs_similarity("", "") == 1.0
    assert lcs_similarity("x y", "") == 0.0
    # characters: "abcd" vs "acde" -> "acd" = 3 / 4
    assert lcs_similarity("abcd", "acde", unit="char") == pytest.approx(0.75)
    with pytest.raises(ValueError):
        lcs_similarity("a", "b", unit="line")


def test_lcs_ranks_task_commands_sensibly():
    t1 = 'Search an article to learn how to hide gauges.\nThen, access the article "How to Hide Gauges"'
    t2 = 'Search an article to learn how to hide gauges quickly.\nThen, access the article "How to Hide Gauges"'
    t3 = "Search an article to learn how to apply cc cream.\nThen, check the reference list"
    assert lcs_similarity(t1, t2) > lcs_similarity(t1, t3) > 0


# ----------------------------------------------------------------------------- WikiHow matcher
def test_wikihow_matcher_scores_pattern_and_lcs():
    m = WikiHowMatcher(instruction_pattern)
    q = MemoryKey("a b c d", "<screen 1>", 'Access the article "How to Fly"')
    r = MemoryKey("a c d e", "<screen 2>", 'Access the article "How to Swim"')
    combined, task, obs = m.score(q, r)
    assert (task, obs) == (pytest.approx(0.75), 1.0)
    assert combined == pytest.approx(0.5 * 0.75 + 0.5 * 1.0)
    r2 = MemoryKey("a c d e", "<screen 2>", "Check the reference list")
    assert m.score(q, r2)[2] == 0.0


def test_reference_list_pattern_matches():
    """The official pattern matcher never matched the reference-list instruction; ours must."""
    m = WikiHowMatcher(instruction_pattern, lam=0.0)
    a = MemoryKey("t1", "s", "Check the reference list.")
    b = MemoryKey("t2", "s", "Then, check the reference list")
    assert m.score(a, b)[0] == 1.0
    c = MemoryKey("t3", "s", "Check the author page of Trudi Griffin, LPC, MS.")
    d = MemoryKey("t4", "s", "Check the author page of Ashley Adams.")
    assert m.score(c, d)[2] == 1.0
    assert m.score(a, c)[2] == 0.0


# ----------------------------------------------------------------------------- WebShop matcher (real MiniLM)
def test_embedder_is_normalised_batched_and_cached(minilm):
    texts = ["i need a long clip-in hair extension", "a noise cancelling usb microphone", "red shoes"]
    batch = minilm.encode(texts)
    assert batch.dtype == np.float32 and batch.shape == (3, minilm.dim) and minilm.dim == 384
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    single = np.vstack([minilm.encode([t]) for t in reversed(texts)])[::-1]
    assert np.allclose(batch, single, atol=1e-5)
    assert minilm.name == "sentence-transformers/all-MiniLM-L6-v2"
    from rlem_gym.memory.embeddings import load_embedder

    assert load_embedder("all-MiniLM-L6-v2") is minilm  # one model per process


def test_webshop_task_similarity_is_a_real_cosine(minilm, page_kind):
    """The official relevance matcher always returned 1.0: ours is the cosine of embeddings."""
    m = WebShopMatcher(minilm, page_kind)
    q = MemoryKey("i want a noise cancelling usb microphone", "results p1")
    near = MemoryKey("looking for a usb microphone with noise cancellation", "results p2")
    far = MemoryKey("i need a long clip-in hair extension which is natural looking", "results p3")
    s_near, s_far = m.score(q, near), m.score(q, far)
    assert s_near[1] != s_far[1]
    assert 0.5 < s_near[1] < 0.999 and s_far[1] < 0.3
    v = minilm.encode([q.task, near.task])
    assert s_near[1] == pytest.approx(float(v[0] @ v[1]), abs=1e-5)
    assert s_near[2] == 1.0 and s_near[0] == pytest.approx(0.5 * s_near[1] + 0.5)
    assert m.score(q, q)[1] == pytest.approx(1.0, abs=1e-5)
    other_page = MemoryKey(near.task, "item x")
    assert m.score(q, other_page)[2] == 0.0
    assert m.score(q, other_page)[0] == pytest.approx(0.5 * s_near[1])


# ----------------------------------------------------------------------------- the text charset
def test_sanitize_replaces_exactly_the_code_points_outside_charset():
    from rlem_gym.spaces import CHARSET, REPLACEMENT, sanitize

    allowed = frozenset(CHARSET)
    every = "".join(map(chr, range(0x110000)))  # surrogates included
    expected = "".join(c if c in allowed else REPLACEMENT for c in every)
    assert sanitize(every, max_length=len(every)) == expected
    assert sanitize("ab\x00c", max_length=3) == "ab?"
