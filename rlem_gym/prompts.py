"""Prompt text and prompt assembly for the Rememberer-style agents and ReAct, within a token budget.

What lives here: the per-env preambles (action grammar + principles) and the generic adapter's,
the input templates (the official Rememberer layouts: a YAML-like block for WebShop, the
``Task/Last 5 Actions/Screen/Instruction/Last Reward/Total Reward`` block for WikiHow; the
generic adapter's block), exemplar and advice rendering,
and :func:`build_advice_prompt` / :func:`build_react_prompt`, which keep every prompt within
``llm.context_length - max_tokens - margin`` tokens of the model's own tokenizer, counting the
answer cue (``Encouraged:`` / ``Action:``) that the agent passes as the LLM's ``response_prefix``
(it starts the model's reply, so a chat model continues it instead of chatting about it). Long
observations are truncated from the start (the paper's rule), exemplars first, then the
current one; exemplars are dropped (least similar first) only when even empty ones do not fit.

Order and prefix reuse: a backend that keeps the previous call's KV cache (HF, llama.cpp)
re-reads only what follows the longest common token prefix of two consecutive prompts
(:func:`common_prefix_fraction`). The prompt already runs from the most stable part to the least:
the preamble (fixed per env), the exemplars (fixed for the static agent; for the Rememberer fixed
while the retrieval key's page type or instruction pattern stays the same), then the new input.
The exemplar order is a setting (:data:`EXEMPLAR_ORDERS`): the official code's (most similar last,
next to the new input; the default), most similar first, or by record id. Measured with the
Qwen2.5 tokenizer over 10 test episodes per env (``benchmarks/perf/bench_step.py --tokenizer-only``),
the similarity and stable orders reuse exactly the same share (WebShop 15.5%, WikiHow 72.6%):
within an episode the task similarity is constant, so two consecutive steps retrieve either the
same records in the same rank order or disjoint ones, and the order cannot matter (the same
argument holds for the official order). Moving the new input's task text before the exemplars would save at
most its ~40 tokens on a changed exemplar set and would change the paper's layout, so it is not done.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Sequence

from rlem_gym.advice import AdviceLine, render_advice
from rlem_gym.llm.base import common_prefix_len, truncate_to_tokens
from rlem_gym.trajectory import LAST_ACTIONS, Situation

if TYPE_CHECKING:
    from rlem_gym.llm.base import LLM

# ------------------------------------------------------------------------------------ constants
WEBSHOP_PREAMBLE = """\
I am shopping on a website and must buy the product that an instruction describes. My available actions are:

search[keywords]
click[element]

For each input I give action advice: Encouraged actions worth taking and Discouraged actions to avoid, \
each with its value estimate (the expected final reward) and a short reason.

Principles for deciding:

1. I search with the key words of the instruction, and try other key words if a search does not lead to the target.
2. I open a product whose title matches the instruction, choose the options the instruction asks for, then click buy now.
3. I do not repeat an action that did not help.
4. I can search only when search is listed under Available Actions; otherwise I click one of the listed elements.
5. I encourage actions with high value estimates and discourage actions with low ones."""

WIKIHOW_PREAMBLE = """\
I operate the wikiHow app to finish a task given as a list of commands. At each step I see the task, \
the screen as simplified HTML and the current instruction. My available actions are:

INPUT(element_id, text)
CLICK(element_id)
SCROLL(direction)
GOBACK

Directions are UP, DOWN, LEFT and RIGHT. For each input I give action advice: Encouraged actions worth \
taking and Discouraged actions to avoid, each with its value estimate and a short reason.

Principles for deciding:

1. If a link to the wanted content is on the screen, I click it. Otherwise I search for it or scroll down.
2. I try other key words if a search does not lead to the target.
3. I do not repeat an action that did not help.
4. I encourage actions with high value estimates and discourage actions with low ones.
5. A title inside the instruction is usually not the title of the current page."""

WEBSHOP_REACT_PREAMBLE = """\
I shop on a website for the product an instruction describes. Each of my lines is one action: \
search[keywords], click[element] (an element shown in [brackets] on the page, lower-case), or \
think[my reasoning], which does not change the page. Here is an example."""

WIKIHOW_REACT_PREAMBLE = """\
I operate the wikiHow app to finish a task given as a list of commands. Each of my lines is one action: \
INPUT(element_id, text), CLICK(element_id), SCROLL(UP|DOWN|LEFT|RIGHT), GOBACK, or think[my reasoning], \
which does not change the screen. Here is an example."""

#: the generic adapter's opening line when the user gives no env description
GENERIC_DESCRIPTION = "I act in a text environment to finish a task."

GENERIC_PRINCIPLES = """\
At each step I see the task, my last actions, the current observation and the actions available now. \
For each input I give action advice: Encouraged actions worth taking and Discouraged actions to avoid, \
each with its value estimate (the expected future reward) and a short reason.

Principles for deciding:

1. I choose only among the Available Actions, and write an action exactly as it is listed.
2. I take the actions that bring me closer to finishing the task.
3. I do not repeat an action that did not help.
4. I encourage actions with high value estimates and discourage actions with low ones."""

GENERIC_REACT_PRINCIPLES = """\
Each of my lines is one action, written exactly as one of the available actions is listed, or \
think[my reasoning], which does not change the environment. Here is an example."""


EXAMPLES_HEADER = "Here are some examples:"
NEW_INPUT_HEADER = "Now the new input:"
#: the Rememberer's answer cue: the start of the model's reply (``response_prefix``), not part of the prompt
ANSWER_CUE = "Encouraged:\n"
#: ReAct's answer cue (``response_prefix``)
REACT_CUE = "Action:"
#: tokens kept free for the chat template the backend wraps around the prompt
DEFAULT_MARGIN_TOKENS = 64
#: slack per truncated piece, because token counts are not exactly additive across joins
_JOIN_SLACK = 4


# ---------------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class Exemplar:
    """An in-context exemplar: a situation and the action advice for it."""

    input: Situation
    encouraged: tuple[AdviceLine, ...] = ()
    discouraged: tuple[AdviceLine, ...] = ()
    record_id: int | None = None
    """Id of the memory record it came from (None for static exemplars)."""
    rank: int | None = None
    """Similarity rank at retrieval (0 = most similar; None for static exemplars). When exemplars
    must be dropped to fit the budget, the highest rank goes first."""
    number: int | None = None
    """The number it is shown with (``Example <number>:``); None: its position in the prompt."""


@dataclass
class BuiltPrompt:
    """A prompt and what fitting it into the budget cost."""

    text: str
    tokens: int
    budget: int
    truncated_observations: int = 0
    dropped_exemplars: int = 0
    hard_truncated: bool = False
    exemplars_used: list[Exemplar] = field(default_factory=list)
    response_prefix: str = ""
    """The reply's forced start (pass it as ``llm.generate(..., response_prefix=...)``); ``tokens`` counts it."""


# ------------------------------------------------------------------------ exemplar order
#: how the Rememberer orders its exemplars in the prompt (see :func:`order_exemplars`): "official"
#: (the default), "similarity" (most similar first) or "stable" (by memory record id)
EXEMPLAR_ORDERS: tuple[str, ...] = ("official", "similarity", "stable")


def check_exemplar_order(order: str) -> str:
    """Validate an exemplar order name; raise ValueError naming the valid ones."""
    if order not in EXEMPLAR_ORDERS:
        raise ValueError(f"unknown exemplar order {order!r}: use one of {', '.join(EXEMPLAR_ORDERS)}")
    return order


def stable_exemplar_order(exemplars: Sequence[Exemplar]) -> list[Exemplar]:
    """Exemplars sorted by memory record id (oldest record first), so the prompt does not depend on rank.

    Two steps that retrieve the same records show them in the same order (and one that keeps
    an older record keeps the prompt's prefix up to it). Exemplars without a record id (static
    ones) keep the order given.
    """
    exemplars = list(exemplars)
    if any(e.record_id is None for e in exemplars):
        return exemplars
    return sorted(exemplars, key=lambda e: e.record_id)


def order_exemplars(exemplars: Sequence[Exemplar], order: str) -> list[Exemplar]:
    """Exemplars (given most similar first) in the prompt order ``order`` names.

    - ``"official"``: the official Rememberer code's order, in both its WebShop and WikiHow agents:
      the most similar exemplar comes last, next to the new input, and each exemplar keeps the
      number of its similarity rank, so a prompt reads ``Example 2: ...`` then ``Example 1: ...``.
    - ``"similarity"``: most similar first, numbered in prompt order (this project's order until
      2026-11-30, used by the study's first WebShop run).
    - ``"stable"``: by memory record id (see :func:`stable_exemplar_order`), numbered in prompt order.
    """
    order = check_exemplar_order(order)
    if order == "stable":
        return stable_exemplar_order(exemplars)
    if order == "official":
        return [replace(e, number=i + 1) for i, e in reversed(list(enumerate(exemplars)))]
    return list(exemplars)


def common_prefix_fraction(previous: Sequence[int], current: Sequence[int]) -> float:
    """Share of ``current``'s tokens a prefix cache holding ``previous`` serves (0 for an empty prompt).

    This is what a KV-reusing backend reports as ``Completion.cached_tokens / prompt_tokens``
    for consecutive calls: only the tokens after the longest common prefix are prefilled.
    """
    return common_prefix_len(previous, current) / len(current) if len(current) else 0.0


def _drop_position(exemplars: Sequence[Exemplar]) -> int:
    """Index of the exemplar to drop first: the highest similarity rank, else the last one."""
    return max(range(len(exemplars)), key=lambda i: (-1 if exemplars[i].rank is None else exemplars[i].rank, i))


# ----------------------------------------------------------------------------- pure rendering
def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) if text else prefix


def _fmt_reward(value: float) -> str:
    return f"{float(value):.1f}"


def render_webshop_input(inp: Situation) -> str:
    """The WebShop input block (the official YAML-like layout).

    The env's pages start with the instruction; when an observation does not hold the task text,
    a ``Task:`` part is added on top so the model always sees what to buy.
    """
    actions = "\n".join(f"- {a}" for a in inp.last_actions[-LAST_ACTIONS:])
    available = "\n".join(f"- {a}" for a in inp.available_actions)
    task = f"Task:\n{inp.task}\n" if inp.task and inp.task not in inp.observation else ""
    return (
        f"---\n{task}Last 5 Actions:\n{actions}\nObservation: |\n{_indent(inp.observation)}\n"
        f"Available Actions:\n{available}\n..."
    )


def render_wikihow_input(inp: Situation) -> str:
    """The WikiHow input block (the official Rememberer layout)."""
    actions = "\n".join(inp.last_actions[-LAST_ACTIONS:])
    return (
        f"```\nTask:\n{inp.task}\nLast 5 Actions:\n{actions}\nScreen:\n{inp.observation}\n"
        f"Instruction:\n{inp.instruction}\nLast Reward:\n{_fmt_reward(inp.last_reward)}\n"
        f"Total Reward:\n{_fmt_reward(inp.total_reward)}\n---"
    )


def generic_preamble(description: str | None = None) -> str:
    """The generic adapter's Rememberer preamble: the env's description (one paragraph), then the principles."""
    return f"{(description or GENERIC_DESCRIPTION).strip()}\n\n{GENERIC_PRINCIPLES}"


def generic_react_preamble(description: str | None = None) -> str:
    """The generic adapter's ReAct preamble: the env's description, then the action line format."""
    return f"{(description or GENERIC_DESCRIPTION).strip()} {GENERIC_REACT_PRINCIPLES}"


def render_generic_input(inp: Situation) -> str:
    """The generic adapter's input block: the WebShop layout's fields plus the rewards, the task always shown."""
    actions = "\n".join(f"- {a}" for a in inp.last_actions[-LAST_ACTIONS:])
    available = "\n".join(f"- {a}" for a in inp.available_actions)
    return (
        f"---\nTask:\n{inp.task}\nLast 5 Actions:\n{actions}\nObservation: |\n{_indent(inp.observation)}\n"
        f"Last Reward: {_fmt_reward(inp.last_reward)}\nTotal Reward: {_fmt_reward(inp.total_reward)}\n"
        f"Available Actions:\n{available}\n..."
    )


def render_exemplar(render_input: Callable[[Situation], str], exemplar: Exemplar, discouraged: bool = True) -> str:
    """One exemplar: its input block, a blank line, then its advice block."""
    advice = render_advice(exemplar.encouraged, exemplar.discouraged if discouraged else None)
    return f"{render_input(exemplar.input)}\n\n{advice}"


def assemble_advice_prompt(
    preamble: str,
    rendered_exemplars: Sequence[str],
    rendered_query: str,
    numbers: Sequence[int | None] | None = None,
) -> str:
    """Join preamble, numbered exemplars and the new input, ending with a blank line.

    ``numbers[i]`` is the number shown for exemplar i (None or missing: its position, from 1).
    The answer cue (:data:`ANSWER_CUE`) is not included: it is the reply's ``response_prefix``,
    and ``prompt + ANSWER_CUE`` is exactly what a base model completes.
    """
    numbers = list(numbers or [])
    parts = [preamble.rstrip(), ""]
    if rendered_exemplars:
        parts += [EXAMPLES_HEADER, ""]
        for i, text in enumerate(rendered_exemplars, 1):
            number = numbers[i - 1] if i <= len(numbers) and numbers[i - 1] is not None else i
            parts += [f"Example {number}:", "", text, ""]
    parts += [NEW_INPUT_HEADER, "", rendered_query, "", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------------- the budget
def prompt_budget(llm: "LLM", max_tokens: int, margin: int = DEFAULT_MARGIN_TOKENS) -> int:
    """Tokens a prompt may use so that prompt + completion fit the model's context window."""
    return max(16, int(llm.context_length) - int(max_tokens) - int(margin))


def _water_fill(sizes: list[int], total: int) -> list[int]:
    """Caps c_i <= sizes[i] with sum(c_i) <= total, as equal as possible (small pieces kept whole)."""
    caps = [0] * len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    left = max(0, total)
    for pos, i in enumerate(order):
        share = left // (len(order) - pos)
        caps[i] = min(sizes[i], share)
        left -= caps[i]
    return caps


def _fit_text(llm: "LLM", text: str, budget: int) -> str:
    return truncate_to_tokens(llm, text, budget, keep="end")


def build_advice_prompt(
    llm: "LLM",
    *,
    preamble: str,
    render_input: Callable[[Situation], str],
    exemplars: Sequence[Exemplar],
    query: Situation,
    discouraged: bool = True,
    budget: int,
    response_prefix: str = ANSWER_CUE,
) -> BuiltPrompt:
    """Assemble the Rememberer prompt so that prompt + ``response_prefix`` fit ``budget`` tokens of ``llm``'s tokenizer.

    Exemplars are shown in the order given. Observations are cut from the start (exemplars and
    the new input share what is left after the fixed text, equal shares, short ones kept whole);
    when even empty exemplars overflow, exemplars are dropped, the least similar first (highest
    :attr:`Exemplar.rank`; the last one when no ranks are set). A final check guarantees the budget.
    """
    exemplars = list(exemplars)
    cue = llm.count_tokens(response_prefix) if response_prefix else 0
    room = budget - cue

    def built(text: str, tokens: int, truncated: int = 0, dropped: int = 0, hard: bool = False) -> BuiltPrompt:
        return BuiltPrompt(text, tokens + cue, budget, truncated, dropped, hard, list(exemplars), response_prefix)

    def render(exs: Sequence[Exemplar], q: Situation) -> str:
        return assemble_advice_prompt(
            preamble,
            [render_exemplar(render_input, e, discouraged) for e in exs],
            render_input(q),
            [e.number for e in exs],
        )

    text = render(exemplars, query)
    tokens = llm.count_tokens(text)
    if tokens <= room:
        return built(text, tokens)

    dropped = 0
    while True:
        skeleton = render(
            [replace(e, input=replace(e.input, observation="")) for e in exemplars], replace(query, observation="")
        )
        fixed = llm.count_tokens(skeleton) + _JOIN_SLACK * (len(exemplars) + 1)
        if fixed <= room or not exemplars:
            break
        exemplars.pop(_drop_position(exemplars))
        dropped += 1

    observations = [e.input.observation for e in exemplars] + [query.observation]
    sizes = [llm.count_tokens(o) if o else 0 for o in observations]
    available = room - fixed
    for _attempt in range(6):
        caps = _water_fill(sizes, available)
        truncated = 0
        cut = []
        for obs, size, cap in zip(observations, sizes, caps):
            if size > cap:
                truncated += 1
                cut.append(_fit_text(llm, obs, cap))
            else:
                cut.append(obs)
        exs = [replace(e, input=replace(e.input, observation=o)) for e, o in zip(exemplars, cut[:-1])]
        text = render(exs, replace(query, observation=cut[-1]))
        tokens = llm.count_tokens(text)
        if tokens <= room:
            return built(text, tokens, truncated, dropped)
        available -= (tokens - room) + max(8, available // 20)
    # last resort (the fixed text alone overflows): keep the end, which holds the new input
    text = truncate_to_tokens(llm, text, room, keep="end")
    return built(text, llm.count_tokens(text), truncated, dropped, True)


def build_react_prompt(
    llm: "LLM", *, head: str, history: str, budget: int, response_prefix: str = REACT_CUE
) -> BuiltPrompt:
    """ReAct prompt = ``head`` (preamble + example) + the episode so far, cut from the start so that
    prompt + ``response_prefix`` fit ``budget``."""
    sep = "\n\n"
    cue = llm.count_tokens(response_prefix) if response_prefix else 0
    room = budget - cue

    def built(text: str, tokens: int, truncated: int = 0, hard: bool = False) -> BuiltPrompt:
        return BuiltPrompt(text, tokens + cue, budget, truncated, hard_truncated=hard, response_prefix=response_prefix)

    text = head + sep + history
    tokens = llm.count_tokens(text)
    if tokens <= room:
        return built(text, tokens)
    space = room - llm.count_tokens(head + sep) - _JOIN_SLACK
    if space >= 32:
        cut = _fit_text(llm, history, space)
        text = head + sep + cut
        tokens = llm.count_tokens(text)
        while tokens > room and cut:
            space -= (tokens - room) + 8
            cut = _fit_text(llm, history, space)
            text = head + sep + cut
            tokens = llm.count_tokens(text)
        if tokens <= room:
            return built(text, tokens, 1)
    text = truncate_to_tokens(llm, head + sep + history, room, keep="end")
    return built(text, llm.count_tokens(text), 1, True)
