"""WebShop's pages as text: the observation renderers and :func:`page_type`.

What it is for: turning a page (a list of typed elements) into the two observation formats of the
original text environment, and telling from an observation string alone which kind of page it is
(the memory's WebShop matcher compares page types).

- ``text`` (the original's "simple" mode): the visible texts joined by ``" [SEP] "``, e.g.
  ``WebShop [SEP] Instruction: [SEP] i need ... [SEP] Back to Search [SEP] Page 1 (Total results: 50)
  [SEP] Next > [SEP] B000VOHH8I [SEP] <title> [SEP] $64.98 [SEP] ...``.
- ``text_rich``: one element per line; buttons ``[button] X [button_]``; option values indented by
  two spaces, a chosen one as ``[clicked button] X [clicked button_]`` with a first line
  ``You have clicked X.``; each product link on its own line after an empty one, a product already
  opened in this episode as ``[clicked button] ASIN [clicked button_]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# element kinds
TEXT = "text"
BUTTON = "button"
OPTION = "option"
OPTION_CHOSEN = "option_chosen"
LINK = "link"
LINK_VISITED = "link_visited"

SEP = " [SEP] "
OBSERVATION_MODES = ("text", "text_rich")
DONE_TITLE = "Thank you for shopping with us!"

_SPLIT = re.compile(r"\n|\[SEP\]")
_RESULTS_LINE = re.compile(r"Page \d+ \(Total results: \d+\)")

Element = tuple[str, str]


def render(elements: Sequence[Element], mode: str) -> str:
    """One observation string from a page's elements, in ``mode`` ("text" | "text_rich")."""
    if mode == "text":
        return SEP.join(text for _, text in elements if text)
    lines: list[str] = []
    clicked: list[str] = []
    for kind, text in elements:
        if kind == BUTTON:
            lines.append(f"[button] {text} [button_]")
        elif kind == OPTION:
            lines.append(f"  [button] {text} [button_]")
        elif kind == OPTION_CHOSEN:
            lines.append(f"  [clicked button] {text} [clicked button_]")
            clicked.insert(0, f"You have clicked {text}.")
        elif kind == LINK:
            lines.append(f"\n[button] {text} [button_]")
        elif kind == LINK_VISITED:
            lines.append(f"\n[clicked button] {text} [clicked button_]")
        elif text:
            lines.append(text)
    return "".join(line + "\n" for line in clicked + lines)


def _elements(observation: str) -> list[str]:
    out = []
    for part in _SPLIT.split(observation):
        part = part.strip()
        for open_tag, close_tag in (("[clicked button]", "[clicked button_]"), ("[button]", "[button_]")):
            if part.startswith(open_tag) and part.endswith(close_tag):
                part = part[len(open_tag) : -len(close_tag)].strip()
                break
        if part:
            out.append(part)
    return out


def page_type(observation: str) -> str:
    """The kind of page an observation shows: "search" | "results" | "item" | "item_sub" (| "done").

    Works on both observation modes, with or without the leading instruction, and on the
    ReAct-style observations that show only some results.
    """
    elements = _elements(observation)
    if DONE_TITLE in elements:
        return "done"
    if "Back to Search" not in elements:
        return "search"
    if "Buy Now" in elements:
        return "item"
    if any(_RESULTS_LINE.fullmatch(e) for e in elements):
        return "results"
    return "item_sub"
