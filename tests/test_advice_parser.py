"""Parsing model output: the advice block, ReAct lines, and fuzzing the agent's choice on garbage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlem_gym.advice import AdviceLine, parse_advice, parse_react_line, render_advice
from rlem_gym.agents import Rememberer, get_adapter
from rlem_gym.llm.base import LLM, Completion

WEBSHOP = get_adapter("webshop")
WIKIHOW = get_adapter("wikihow")

RESULTS_INFO = {
    "instruction": "i need a long lasting deodorant, and price lower than 40.00 dollars",
    "page": "results",
    "available_actions": {
        "has_search_bar": False,
        "clickables": ["back to search", "next >", "b078gwrc1j", "b078gtkvxy", "b08kbvj4xn"],
    },
}
SEARCH_INFO = {
    "instruction": "i need a long lasting deodorant, and price lower than 40.00 dollars",
    "page": "search",
    "available_actions": {"has_search_bar": True, "clickables": []},
}
WIKIHOW_INFO = {
    "task_lines": [
        "Search an article to learn how to clean utensils.",
        'Then, access the article "How to Clean Utensils"',
    ],
    "instruction": "",
    "page": "home",
    "clickable_ids": [0, 2, 3],
    "input_ids": [2],
}


class ScriptedLLM(LLM):
    """Returns scripted replies in turn (cycling); counts tokens as characters // 4."""

    name = "scripted"
    context_length = 4096

    def __init__(self, replies):
        self.replies = list(replies)
        self.prompts: list[str] = []

    def generate(self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix=""):
        self.prompts.append(prompt)
        text = self.replies[(len(self.prompts) - 1) % len(self.replies)]
        return Completion(text, self.count_tokens(prompt), self.count_tokens(text), 0.0, "stop")


# ------------------------------------------------------------------------------- block parsing
def test_official_block_parses_with_q_and_reason():
    text = (
        "click[b078gwrc1j] -> 1.0 b078gwrc1j is bright citrus deodorant. I can check it first.\n"
        "Discouraged:\n"
        "click[b087wksr2g] -> 0.0 b087wksr2g is not the desired item.\n"
    )
    parsed = parse_advice(text, WEBSHOP.extract_actions)
    assert parsed.encouraged == [
        AdviceLine("click[b078gwrc1j]", 1.0, "b078gwrc1j is bright citrus deodorant. I can check it first.")
    ]
    assert parsed.discouraged == [AdviceLine("click[b087wksr2g]", 0.0, "b087wksr2g is not the desired item.")]


def test_wikihow_block_and_tolerances():
    text = (
        "Encouraged:\n"
        '  input(2, "clean utensils") → 2 search for it\n'
        "* CLICK( 3 )\n"
        "Discouraged:\n"
        "SCROLL(right) => -0.5\n"
        "GOBACK -> nan whatever\n"
    )
    parsed = parse_advice(text, WIKIHOW.extract_actions)
    assert [a.action for a in parsed.encouraged] == ["INPUT(2, clean utensils)", "CLICK(3)"]
    assert parsed.encouraged[0].q == 2.0 and parsed.encouraged[0].reason == "search for it"
    assert parsed.encouraged[1].q is None  # missing Q tolerated
    assert [(a.action, a.q) for a in parsed.discouraged] == [("SCROLL(RIGHT)", -0.5), ("GOBACK", None)]


def test_echoed_prompt_pauses_parsing_until_next_header():
    text = (
        "---\nTask:\ni need shoes\nLast 5 Actions:\n- search[shoes]\nObservation: |\n  click[b000000000]\n"
        "Available Actions:\n- back to search\n...\n\nEncouraged:\nclick[next >] -> 0.5 more results\n"
    )
    parsed = parse_advice(text, WEBSHOP.extract_actions)
    assert [a.action for a in parsed.encouraged] == ["click[next >]"]
    assert parsed.discouraged == []


def test_half_action_and_case_are_canonicalised():
    parsed = parse_advice("CLICK [Buy Now", WEBSHOP.extract_actions)
    assert [a.action for a in parsed.encouraged] == ["click[buy now]"]
    assert WEBSHOP.canonicalize("Search[  Red   Shirt ]") == "search[Red Shirt]"
    assert WIKIHOW.canonicalize("go back") == "GOBACK"
    assert WIKIHOW.canonicalize("click(x)") is None


@pytest.mark.parametrize("text", ["", "   \n\n", "Encouraged:\nDiscouraged:\n", "\x00\x01\u2028\ufffd" * 5])
def test_empty_or_junk_gives_empty_advice(text):
    assert parse_advice(text, WEBSHOP.extract_actions).empty


def test_render_advice_round_trips_through_the_parser():
    enc = [AdviceLine("click[b078gwrc1j]", 1.0, "matches")]
    dis = [AdviceLine("click[description]", 0.0, "not needed"), AdviceLine("search[x y]", -0.5, "")]
    block = render_advice(enc, dis)
    assert block.splitlines()[0] == "Encouraged:" and "click[description] -> 0.0 not needed" in block
    parsed = parse_advice(block, WEBSHOP.extract_actions)
    assert parsed.encouraged == enc
    assert [(a.action, a.q) for a in parsed.discouraged] == [("click[description]", 0.0), ("search[x y]", -0.5)]
    assert "Discouraged" not in render_advice(enc, None)


def test_react_lines():
    ex = WEBSHOP.extract_actions
    assert parse_react_line(" think[I should search first.]\nObservation: OK.", ex).kind == "think"
    line = parse_react_line("\nAction: Click[B078GWRC1J]", ex)
    assert (line.kind, line.text) == ("act", "click[b078gwrc1j]")
    assert parse_react_line("I do not know", ex).kind == "none"
    assert parse_react_line("", ex).kind == "none"


# ------------------------------------------------------------------------------------- fuzzing
_FRAGMENTS = [
    "click[b078gwrc1j]",
    "click[B078GTKVXY]",
    "click[next >]",
    "click[back to search]",
    "click[buy now]",
    "click[b0000fake1]",
    "click[",
    "search[deodorant]",
    "search[",
    "CLICK(3)",
    "INPUT(2, x)",
    "SCROLL(DOWN)",
    " -> ",
    "→",
    " 1.0 ",
    "-0.5",
    "nan",
    "Encouraged:",
    "Discouraged:",
    "\n",
    "\n\n",
    "---",
    "```",
    "Task:",
    "Available Actions:\n- b078gwrc1j",
    "é漢字🙂",
    "\x00",
    "\u202e",
    "]]]",
    "[[[",
    "((",
    "think[hmm]",
    "Action:",
]


def _garbage(rng: np.random.Generator) -> str:
    n = int(rng.integers(0, 12))
    parts = [_FRAGMENTS[int(i)] for i in rng.integers(0, len(_FRAGMENTS), size=n)]
    if rng.random() < 0.3:
        parts.append("".join(chr(int(c)) for c in rng.integers(0, 0x2FFFF, size=int(rng.integers(1, 40)))))
    return "".join(parts)


def _checked_run(adapter, info, replies):
    llm = ScriptedLLM(replies)
    agent = Rememberer(llm, None, adapter, k=0)
    agent.reset("page", info)
    fallbacks = 0
    for _ in replies:
        action = agent.act("page", info)
        assert adapter.is_valid(action, info), (action, agent.last_step.raw_output)
        if agent.last_step.fallback:
            fallbacks += 1
            assert agent.last_step.fallback_reason
        else:
            # a non-fallback action must come from the model's Encouraged advice
            assert action in [adapter.canonicalize(a.action) for a in agent.last_step.parsed.encouraged]
    assert agent.stats.fallbacks == fallbacks and agent.stats.steps == len(replies)
    return fallbacks


@pytest.mark.parametrize("adapter,info", [(WEBSHOP, RESULTS_INFO), (WEBSHOP, SEARCH_INFO), (WIKIHOW, WIKIHOW_INFO)])
def test_fuzz_seeded_garbage_only_valid_actions_and_counted_fallbacks(adapter, info):
    rng = np.random.default_rng(1234)
    replies = [_garbage(rng) for _ in range(1500)]
    fallbacks = _checked_run(adapter, info, replies)
    assert 0 < fallbacks < len(replies)  # both paths exercised


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_hypothesis_parser_never_raises(text):
    for adapter in (WEBSHOP, WIKIHOW):
        parsed = parse_advice(text, adapter.extract_actions)
        for advice in parsed.encouraged + parsed.discouraged:
            assert adapter.canonicalize(advice.action) == advice.action
        parse_react_line(text, adapter.extract_actions)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=20), max_size=12).map("".join))
def test_fuzz_hypothesis_agent_choice(text):
    _checked_run(WEBSHOP, RESULTS_INFO, [text])
