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

:func:`from_site_layout` reads a third layout, the one the Rememberer authors' WebShop memory pools
were written in (one element per line, ``[Button]``, option rows ``size [a][[b]]`` with the
chosen value in double brackets, no leading ``WebShop`` on inner pages), and renders it in either
mode, so that an imported pool looks like what the env shows.
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
#: the site layout: a bracketed element (``[Buy Now]``, ``[[B078GWRC1J]]``), an option row, a product id
_SITE_BRACKETED = re.compile(r"(\[\[?)([^\[\]]*)(\]\]?)")
_SITE_OPTION_ROW = re.compile(r"([^\[\]]+?)\s*((?:\[\[?[^\[\]]*\]\]?)+)")
_ASIN = re.compile(r"B[0-9A-Z]{9}")
_SITE_CLICKED_LINE = re.compile(r"You have clicked (.*)\.")

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


def parse_site_layout(text: str) -> list[Element]:
    """The elements of a page written in the pools' site layout (see the module docstring).

    ``[X]`` is a button, ``[ASIN]`` a product link (``[[ASIN]]`` one already opened), ``name [a][[b]]``
    an option row (``[[b]]`` the chosen value), ``You have clicked X.`` marks option X as chosen (the
    renderer writes the line again in ``text_rich`` mode) and every other line is text. A page that does not start
    with ``WebShop`` gets it, as every env page does.
    """
    elements: list[Element] = []
    clicked_values: set[str] = set()
    for raw in str(text).split("\n"):
        line = raw.strip()
        if not line:
            continue
        said = _SITE_CLICKED_LINE.fullmatch(line)
        if said:
            clicked_values.add(said.group(1).strip())
            continue
        whole = _SITE_BRACKETED.fullmatch(line)
        if whole and len(whole.group(1)) == len(whole.group(3)):
            label, clicked = whole.group(2).strip(), len(whole.group(1)) == 2
            if _ASIN.fullmatch(label):
                elements.append((LINK_VISITED if clicked else LINK, label))
            else:
                elements.append((BUTTON, label))
            continue
        row = _SITE_OPTION_ROW.fullmatch(line)
        if row:
            elements.append((TEXT, row.group(1).strip()))
            for m in _SITE_BRACKETED.finditer(row.group(2)):
                elements.append((OPTION_CHOSEN if len(m.group(1)) == 2 else OPTION, m.group(2).strip()))
            continue
        elements.append((TEXT, line))
    # some pools say "You have clicked X." without marking X as [[X]] in its row
    elements = [(OPTION_CHOSEN, t) if k == OPTION and t in clicked_values else (k, t) for k, t in elements]
    if not elements or elements[0] != (TEXT, "WebShop"):
        elements.insert(0, (TEXT, "WebShop"))
    return elements


def from_site_layout(text: str, mode: str = "text") -> str:
    """A site-layout page (the Rememberer pools' observations) as the env shows it in ``mode``."""
    if mode not in OBSERVATION_MODES:
        raise ValueError(f"mode must be one of {OBSERVATION_MODES}, got {mode!r}")
    from rlem_gym.spaces import sanitize  # lazy: page_type users need no gymnasium/numpy

    return sanitize(render(parse_site_layout(text), mode))


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
