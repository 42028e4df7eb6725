"""Instruction patterns: WikiHow instructions with their slot text masked.

The memory's WikiHow matcher compares instructions by pattern, so that every "Access the
article ..." instruction matches every other one whatever the title, and likewise for author
and category names. Task lines ("Then, check the reference list") and revealed instructions
("Check the reference list") map to the same pattern.
"""

from __future__ import annotations

import re

MASK = "…"

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'^access the article\s*["“]?how to .*$', re.I), f'Access the article "{MASK}"'),
    (re.compile(r"^(?:check|access|open) the author page of .+$", re.I), f"Check the author page of {MASK}"),
    (re.compile(r"^access the page of category .+$", re.I), f"Access the page of category {MASK}"),
    (re.compile(r"^search an article to learn how to .+$", re.I), f"Search an article to learn how to {MASK}"),
    (re.compile(r"^access the about page\b.*$", re.I), "Access the about page to learn why people trust wikihow"),
    (re.compile(r"^check the reference(?:s| list)?\b.*$", re.I), "Check the reference list"),
)


def instruction_pattern(instruction: str) -> str:
    """``instruction`` with its slots masked (title, author, category); "" stays "".

    >>> instruction_pattern('Access the article "How to Overcome Fear"')
    'Access the article "…"'
    >>> instruction_pattern("Then, check the reference list")
    'Check the reference list'
    """
    text = " ".join(instruction.split())
    text = re.sub(r"^then,?\s+", "", text, flags=re.I).strip()
    if not text:
        return ""
    for rx, pattern in _RULES:
        if rx.match(text):
            return pattern
    text = re.sub(r'"[^"]*"', f'"{MASK}"', text)
    return text[:1].upper() + text[1:].rstrip(".")
