"""Prompt-lookup drafting in the llama.cpp backend: the guesses, and replies that match plain greedy decoding."""

from __future__ import annotations

import importlib.util

import pytest

from rlem_gym.llm.constraint import ActionConstraint
from rlem_gym.llm.llamacpp import prompt_lookup


def test_prompt_lookup_continues_the_latest_earlier_occurrence_of_the_longest_ngram():
    # ... 7 8 9 appeared twice; the latest occurrence is followed by 10 11
    assert prompt_lookup([7, 8, 9, 1, 2, 7, 8, 9, 10, 11, 3, 8, 9], 2) == [10, 11]
    # the trigram 5 8 9 never occurred: the bigram 8 9 decides
    assert prompt_lookup([1, 8, 9, 4, 5, 8, 9], 3) == [4, 5, 8]
    assert prompt_lookup([1, 2, 3, 4], 3) == []  # the last token never occurred before
    assert prompt_lookup([4, 2, 4], 5) == [2, 4]  # no more than what follows
    assert prompt_lookup([1, 2, 1], 0) == [] and prompt_lookup([1], 3) == []


@pytest.fixture(scope="module")
def pair():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install rlem-gym[llamacpp])")
    from rlem_gym.llm import make_llm

    plain = make_llm("smollm2-gguf", prefix_cache_mb=0)
    drafting = make_llm("smollm2-gguf", prefix_cache_mb=0, draft_tokens=2)
    yield plain, drafting
    plain.close()
    drafting.close()


TRANSCRIPT = "".join(
    f"Observation: page {i} lists a red wool scarf, a blue scarf and a hat.\n"
    f"Action: think[I should find the red wool scarf, so I will click the first result on page {i}.]\n"
    for i in range(4)
)


def test_drafted_replies_match_plain_greedy_ones_and_keep_guesses(pair):
    plain, drafting = pair
    think = ActionConstraint.of(["click[red wool scarf]", "click[blue scarf]"], [("think[", "]")]).prefixed(" ")
    cases = [
        dict(prompt="Repeat this sentence three times: the quick brown fox jumps over the lazy dog.", max_tokens=40),
        dict(prompt=TRANSCRIPT + "Observation: page 4 lists a red wool scarf.\n", max_tokens=40, stop=["\n"]),
        dict(prompt=TRANSCRIPT, max_tokens=48, response_prefix="Action:", constraint=think),
        dict(prompt="Count from 1 to 30, separated by commas.", max_tokens=20),  # ends by length
    ]
    for case in cases:  # no reset between cases: the live context holds the last case's prompt and reply
        a, b = plain.generate(**case), drafting.generate(**case)
        assert (b.text, b.finish_reason, b.completion_tokens, b.prompt_tokens) == (
            a.text,
            a.finish_reason,
            a.completion_tokens,
            a.prompt_tokens,
        ), case
        if case.get("stop"):
            assert "\n" not in b.text
    assert drafting.drafts_kept > 0 and drafting.drafts_checked >= drafting.drafts_kept
    assert plain.drafts_checked == 0
    # sampled replies decode without drafts
    before = drafting.drafts_checked
    drafting.generate("Repeat: a b c a b c a b c", max_tokens=8, temperature=0.7, seed=1)
    assert drafting.drafts_checked == before
    with pytest.raises(ValueError, match="draft_tokens"):
        type(drafting)(drafting._llm.model_path, draft_tokens=-1)
