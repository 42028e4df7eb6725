"""The project's one text charset and the Text spaces built from it.

Gymnasium's default ``Text`` charset holds only letters and digits, so neither
``search[red shirt]`` nor a product title would be a member. rlem-gym uses every printable
character of the Basic Multilingual Plane plus newline and tab; any other character in an
observation (an emoji outside the BMP, a control code) is replaced by ``REPLACEMENT`` via
:func:`sanitize`, so every observation is a member of its space.
"""

from __future__ import annotations

import re

import gymnasium as gym

#: longest observation / action string the spaces admit; longer text is truncated by the envs.
MAX_TEXT_LENGTH = 65_536

REPLACEMENT = "?"


def _build_charset() -> str:
    chars = ["\n", "\t"]
    for cp in range(0x20, 0x10000):
        if 0xD800 <= cp <= 0xDFFF or 0x7F <= cp <= 0x9F:
            continue  # surrogates and C1 control codes
        chars.append(chr(cp))
    return "".join(chars)


#: The project-wide charset (one constant, shared by every env).
CHARSET: str = _build_charset()
#: one character outside CHARSET (tests/test_similarity.py checks it against every code point)
_OUTSIDE_CHARSET = re.compile(r"[^\n\t\x20-\x7e\xa0-\ud7ff\ue000-\uffff]")


def sanitize(text: str, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Return ``text`` with characters outside :data:`CHARSET` replaced, cut to ``max_length``."""
    if len(text) > max_length:
        text = text[:max_length]
    return _OUTSIDE_CHARSET.sub(REPLACEMENT, text)


def text_space(min_length: int = 0, max_length: int = MAX_TEXT_LENGTH) -> gym.spaces.Text:
    """A ``gymnasium.spaces.Text`` over :data:`CHARSET` (the empty string is allowed by default)."""
    return gym.spaces.Text(max_length=max_length, min_length=min_length, charset=CHARSET)
