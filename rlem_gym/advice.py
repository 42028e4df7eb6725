"""Tolerant parsing of LLM replies: the Rememberer's advice block and ReAct's action lines.

The Rememberer's reply is forced to start with ``Encouraged:`` (the LLM's ``response_prefix``);
what the model writes after it should read (the agent parses the cue plus that text)::

    click[b07xyz] -> 1.0 It matches the color and size asked for.
    Discouraged:
    click[description] -> 0.0 There is no need to check the description.

Small models reply with anything: nothing, the prompt repeated, half an action, a made-up id,
unicode junk. :func:`parse_advice` never raises; it returns what it could read, and the agent
validates every action against the current page before executing it. Which strings count as
actions is env-specific, so the parser takes an ``extract`` function (the adapter's
``extract_actions``) that finds action-shaped substrings in a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

#: section headers (case-insensitive; "Encouraged", "Encourage:", "**Discouraged:**", ...)
_HEADER_RE = re.compile(r"^[\s*#>_`-]*(encourag\w*|discourag\w*)\b[\s*_`]*:?[\s*_`]*(.*)$", re.IGNORECASE)
#: lines that mean the model started repeating the prompt; parsing pauses until the next header
_ECHO_RE = re.compile(
    r"^\s*(```|---|\.\.\.\s*$|task\s*:|screen\s*:|instruction\s*:|observations?\s*:|last\s+\d+\s+actions|"
    r"last\s+reward|total\s+reward|available\s+actions|now the new input|example\s*\d*\s*:|here are)",
    re.IGNORECASE,
)
#: the advice arrow and its look-alikes
_ARROW_RE = re.compile(r"\s*(?:->|=>|→|⇒|—>|–>|-->)\s*")
#: a Q value right after the arrow
_Q_RE = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))(?![\w.])")


@dataclass(frozen=True)
class AdviceLine:
    """One advice line: an action with its Q estimate (None when the model gave none) and reason."""

    action: str
    q: float | None = None
    reason: str = ""

    def render(self) -> str:
        """The line as the prompt shows it: ``<action> -> <Q with one decimal> <reason>``."""
        q = 0.0 if self.q is None else self.q
        return f"{self.action} -> {q:.1f} {self.reason}".rstrip()


@dataclass
class ParsedAdvice:
    """What :func:`parse_advice` read from one reply."""

    encouraged: list[AdviceLine] = field(default_factory=list)
    discouraged: list[AdviceLine] = field(default_factory=list)
    ignored_lines: int = 0
    """Non-empty lines that held no action (junk, echoed prompt)."""

    @property
    def empty(self) -> bool:
        return not self.encouraged and not self.discouraged


def _clean(text: str) -> str:
    """Drop control characters (but keep newlines and tabs) so junk cannot break line splitting."""
    return "".join(c for c in text if c in "\n\t" or (c.isprintable() and c not in "\u2028\u2029"))


def parse_advice_line(line: str, extract: Callable[[str], list[str]]) -> AdviceLine | None:
    """Read ``<action> [-> <Q>] [reason]`` from one line; None when it holds no action."""
    parts = _ARROW_RE.split(line, maxsplit=1)
    head = parts[0]
    actions = extract(head)
    tail = parts[1] if len(parts) > 1 else ""
    if not actions:
        if len(parts) > 1:
            return None
        actions = extract(line)
        if not actions:
            return None
    q: float | None = None
    match = _Q_RE.match(tail)
    if match:
        try:
            value = float(match.group(1))
            q = value if value == value and abs(value) != float("inf") else None
        except ValueError:  # pragma: no cover - the regex only admits numbers
            q = None
        tail = tail[match.end() :]
    return AdviceLine(action=actions[0], q=q, reason=tail.strip()[:500])


def parse_advice(text: str, extract: Callable[[str], list[str]]) -> ParsedAdvice:
    """Parse a reply to the Rememberer prompt into Encouraged / Discouraged advice; never raises.

    Lines before any header count as Encouraged (the reply continues the ``Encouraged:`` cue).
    An echoed piece of the prompt (``Task:``, ``---``, ``Available Actions:``, ...) pauses the
    parse until the next header, so actions listed inside an echoed prompt are not taken.
    """
    result = ParsedAdvice()
    if not isinstance(text, str) or not text:
        return result
    section: list[AdviceLine] | None = result.encouraged
    for raw_line in _clean(text).splitlines():
        line = raw_line.strip()
        if not line:
            continue
        header = _HEADER_RE.match(line)
        if header:
            word = header.group(1).lower()
            section = result.discouraged if word.startswith("dis") else result.encouraged
            line = header.group(2).strip()
            if not line:
                continue
        elif _ECHO_RE.match(line):
            section = None
            continue
        if section is None:
            result.ignored_lines += 1
            continue
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", line)  # list bullets
        advice = parse_advice_line(line, extract)
        if advice is None:
            result.ignored_lines += 1
        else:
            section.append(advice)
    return result


def render_advice(encouraged: Iterable[AdviceLine], discouraged: Iterable[AdviceLine] | None) -> str:
    """The advice block of an exemplar; ``discouraged=None`` leaves the Discouraged part out (ablation)."""
    lines = ["Encouraged:"]
    lines += [a.render() for a in encouraged]
    if discouraged is not None:
        lines.append("Discouraged:")
        lines += [a.render() for a in discouraged]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- ReAct
_REACT_PREFIX_RE = re.compile(r"^[\s*>`]*(?:action\s*\d*\s*:|act\s*:|>)?\s*", re.IGNORECASE)
_THINK_RE = re.compile(r"^think\s*\[(.*?)(?:\]\s*)?$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ReActLine:
    """One ReAct step read from the model: a thought, an action, or nothing usable."""

    kind: str
    """"think", "act" or "none"."""
    text: str
    """The thought, the action (as extracted), or the raw line."""


def parse_react_line(text: str, extract: Callable[[str], list[str]]) -> ReActLine:
    """Read the first non-empty line of a ReAct reply (``think[...]`` or an action); never raises."""
    if not isinstance(text, str):
        return ReActLine("none", "")
    for raw_line in _clean(text).splitlines():
        line = _REACT_PREFIX_RE.sub("", raw_line.strip(), count=1).strip()
        if not line:
            continue
        think = _THINK_RE.match(line)
        if think:
            return ReActLine("think", think.group(1).strip())
        actions = extract(line)
        if actions:
            return ReActLine("act", actions[0])
        return ReActLine("none", line[:200])
    return ReActLine("none", "")
