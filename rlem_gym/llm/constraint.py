"""The actions valid right now, as a constraint on what an LLM may write in an action slot.

Small models often know what to do but cannot spell it: a product title half remembered, an id
that is not on the screen. In constrained action decoding the model's action slot (the
Rememberer's first ``Encouraged:`` line, ReAct's ``Action:``) is generated under an
:class:`ActionConstraint`, so the action it writes is always one that is valid on the current
page. Reasons, thoughts and the Discouraged list stay free text.

An :class:`ActionConstraint` holds two kinds of alternatives:

- **literals**: complete actions, e.g. ``click[blue shirt]``, ``CLICK(3)``, ``GOBACK``;
- **templates**: a fixed prefix and suffix around one line of free text, e.g. ``search[`` ... ``]``
  or ``INPUT(3, `` ... ``)``. The free text is at least one character, holds no newline and not
  the suffix's first character.

Each backend enforces it with what it has: llama.cpp (in process and its server) with a GBNF
grammar (:meth:`ActionConstraint.gbnf`), vLLM with a regular expression
(:meth:`ActionConstraint.regex`), HF transformers with a token mask computed from the
constraint's character-level prefix test (:meth:`ActionConstraint.allows_prefix`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence


def _check_template(prefix: str, suffix: str) -> None:
    if not prefix or not suffix:
        raise ValueError(f"a template needs a non-empty prefix and suffix, got {prefix!r} ... {suffix!r}")
    if "\n" in prefix or "\n" in suffix:
        raise ValueError(f"template prefix/suffix must be one line, got {prefix!r} ... {suffix!r}")


@dataclass(frozen=True)
class ActionConstraint:
    """The set of action strings an action slot may take (see the module docstring).

    Args:
        literals: complete action strings (duplicates and empty strings are dropped).
        templates: ``(prefix, suffix)`` pairs around one line of free text.
        max_free_chars: most characters of free text in a template (bounds generation).
        forbid: characters the free text may not hold besides newlines and the suffix's first one
            (e.g. ``"["``, which WebShop's action syntax cannot nest).
    """

    literals: tuple[str, ...] = ()
    templates: tuple[tuple[str, str], ...] = ()
    max_free_chars: int = 120
    forbid: str = ""

    def __post_init__(self) -> None:
        lits = tuple(dict.fromkeys(s for s in self.literals if s))
        for s in lits:
            if "\n" in s:
                raise ValueError(f"an action literal must be one line, got {s!r}")
        temps = tuple(dict.fromkeys((str(p), str(s)) for p, s in self.templates))
        for p, s in temps:
            _check_template(p, s)
        if self.max_free_chars < 1:
            raise ValueError(f"max_free_chars must be >= 1, got {self.max_free_chars}")
        object.__setattr__(self, "literals", lits)
        object.__setattr__(self, "templates", temps)

    @classmethod
    def of(
        cls, literals: Iterable[str] = (), templates: Iterable[tuple[str, str]] = (), **kw: Any
    ) -> "ActionConstraint":
        """Build from any iterables."""
        return cls(tuple(literals), tuple(templates), **kw)

    @property
    def empty(self) -> bool:
        """True when no action is allowed at all (a backend cannot decode under it)."""
        return not self.literals and not self.templates

    def __len__(self) -> int:
        return len(self.literals) + len(self.templates)

    # ---------------------------------------------------------------------------- matching
    def matches(self, text: str) -> bool:
        """Whether ``text`` is exactly one allowed action."""
        if text in self.literals:
            return True
        return any(self._free_part(text, p, s) is not None for p, s in self.templates)

    def _free_part(self, text: str, prefix: str, suffix: str) -> str | None:
        if not (text.startswith(prefix) and text.endswith(suffix)) or len(text) < len(prefix) + len(suffix) + 1:
            return None
        free = text[len(prefix) : len(text) - len(suffix)]
        if not self.free_ok(free, suffix) or len(free) > self.max_free_chars:
            return None
        return free

    def banned(self, suffix: str) -> str:
        """The characters a template's free text may not hold: newlines, the suffix's first one, ``forbid``."""
        return "\n\r" + suffix[0] + self.forbid

    def free_ok(self, free: str, suffix: str) -> bool:
        """Whether ``free`` holds none of the characters :meth:`banned` lists."""
        return not any(c in free for c in self.banned(suffix))

    def allows_prefix(self, text: str) -> bool:
        """Whether ``text`` can still be extended into an allowed action (an allowed action itself counts)."""
        if any(lit.startswith(text) for lit in self.literals):
            return True
        return any(self._template_prefix_ok(text, p, s) for p, s in self.templates)

    def _template_prefix_ok(self, text: str, prefix: str, suffix: str) -> bool:
        if len(text) <= len(prefix):
            return prefix.startswith(text)
        if not text.startswith(prefix):
            return False
        rest = text[len(prefix) :]
        stop = rest.find(suffix[0])
        if stop == -1:  # still inside the free text
            return self.free_ok(rest, suffix) and len(rest) <= self.max_free_chars
        free, tail = rest[:stop], rest[stop:]
        return 0 < len(free) <= self.max_free_chars and self.free_ok(free, suffix) and suffix.startswith(tail)

    def complete(self, text: str) -> bool:
        """Whether ``text`` is an allowed action that no allowed action extends (decoding can stop)."""
        if not self.matches(text):
            return False
        return not any(lit != text and lit.startswith(text) for lit in self.literals) and not any(
            self._template_prefix_ok(text, p, s) and not self._free_part(text, p, s) for p, s in self.templates
        )

    # ---------------------------------------------------------------------------- exports
    def regex(self) -> str:
        """A regular expression (no anchors) that matches exactly the allowed actions."""
        parts = [re.escape(lit) for lit in self.literals]
        for p, s in self.templates:
            banned = "".join({"\n": "\\n", "\r": "\\r"}.get(c) or re.escape(c) for c in dict.fromkeys(self.banned(s)))
            parts.append(f"{re.escape(p)}[^{banned}]{{1,{self.max_free_chars}}}{re.escape(s)}")
        return "(" + "|".join(parts) + ")" if parts else "(?!)"

    def gbnf(self) -> str:
        """A llama.cpp GBNF grammar whose ``root`` is exactly one allowed action."""
        if self.empty:
            raise ValueError("an empty ActionConstraint has no grammar")
        alts = [_gbnf_string(lit) for lit in self.literals]
        rules: list[str] = []
        for i, (p, s) in enumerate(self.templates):
            alts.append(f"{_gbnf_string(p)} free{i} {_gbnf_string(s)}")
            rules.append(f"free{i} ::= {_gbnf_class_not(self.banned(s))}{{1,{self.max_free_chars}}}")
        return "\n".join([f"root ::= {' | '.join(alts)}", *rules]) + "\n"

    def prefixed(self, lead: str) -> "ActionConstraint":
        """The same actions, each written after ``lead`` (e.g. the space after ReAct's ``Action:``)."""
        return ActionConstraint(
            tuple(lead + s for s in self.literals),
            tuple((lead + p, s) for p, s in self.templates),
            self.max_free_chars,
            self.forbid,
        )

    def as_dict(self) -> dict[str, object]:
        """A JSON-able description (for logs)."""
        return {"literals": list(self.literals), "templates": [list(t) for t in self.templates], "forbid": self.forbid}


def _gbnf_string(text: str) -> str:
    """A GBNF string literal (JSON escaping is a subset GBNF reads)."""
    return json.dumps(text, ensure_ascii=False)


_GBNF_CLASS_ESCAPES = {"]": "\\]", "[": "\\[", "\\": "\\\\", "^": "\\^", "-": "\\-", "\n": "\\n", "\r": "\\r"}


def _gbnf_class_not(chars: str) -> str:
    """A GBNF character class: any character but those in ``chars``."""
    return "[^" + "".join(_GBNF_CLASS_ESCAPES.get(c, c) for c in dict.fromkeys(chars)) + "]"


def merge(constraints: Sequence[ActionConstraint]) -> ActionConstraint:
    """One constraint that allows what any of ``constraints`` allows."""
    lits: list[str] = []
    temps: list[tuple[str, str]] = []
    for c in constraints:
        lits.extend(c.literals)
        temps.extend(c.templates)
    return ActionConstraint(
        tuple(lits),
        tuple(temps),
        max((c.max_free_chars for c in constraints), default=120),
        "".join(dict.fromkeys("".join(c.forbid for c in constraints))),
    )


def check_constraint(constraint: object) -> None:
    """Raise a clear error for a ``constraint`` argument a backend cannot decode under (None passes)."""
    if constraint is None:
        return
    if not isinstance(constraint, ActionConstraint):
        raise TypeError(
            f"constraint must be an rlem_gym.llm.constraint.ActionConstraint, got {type(constraint).__name__}"
        )
    if constraint.empty:
        raise ValueError("constraint allows no action: pass constraint=None for free decoding")
