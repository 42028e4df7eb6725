"""Agent variant labels: one string names an agent, its settings and whether it trains.

A benchmark row is an agent *variant*, written as a label on ``--agents`` and shown as is in the
tables::

    label   := name [ "[" key "=" value { "," key "=" value } "]" ] [ "@untrained" ]

- ``name``: a registry name (``rememberer``, ``static``, ``react``, ``heuristic``, ``oracle``, ``random``).
- ``[key=value,...]``: settings that differ from the run's (the keys each agent accepts are in
  :data:`VARIANT_KEYS`). Values are ``true`` / ``false``, ``none``, integers, decimals or bare
  words (letters, digits, ``_ . : / -``), so a pool id such as ``webshop:E1`` needs no quotes.
- ``@untrained``: a Rememberer that skips the training phase and plays the test goals with its
  initial memory (the initial pool alone): the row that isolates the learning effect.

Examples: ``rememberer`` (trained, the run's settings), ``rememberer@untrained``,
``rememberer[discouraged=false]`` (the paper's no-Discouraged ablation), ``rememberer[n_step=1]``
(one-step Q), ``rememberer[discouraged=false,learning=success_replay]`` (success replay), ``rememberer[init=webshop:E1]`` (another initial pool), ``static[exemplars=handwritten]``,
``heuristic[policy=keywords]``.

Labels are canonical: keys sorted, values in one spelling, no spaces. :func:`parse_variant`
accepts spaces and any key order, and ``parse_variant(label).label`` is the canonical label, so
two spellings of one variant are the same row. :func:`split_agent_list` splits a comma list
such as ``rememberer,rememberer[n_step=1,discouraged=false],static`` at the top-level commas only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

#: the stage suffix of a Rememberer that skips training
UNTRAINED = "untrained"

#: keys of the Rememberer's memory (``make_agent`` builds the memory with them)
MEMORY_KEYS = (
    "n_step",
    "gamma",
    "capacity",
    "action_capacity",
    "update_mode",
    "lr",
    "double_q",
    "eviction",
    "learning",
)
_LLM_KEYS = ("fallback", "max_tokens", "temperature", "action_decoding", "screen")

#: name -> the keys its variants may set
VARIANT_KEYS: dict[str, tuple[str, ...]] = {
    "rememberer": (
        "k",
        "discouraged",
        "random_advice",
        "advice_draw",
        "exemplar_order",
        "init",
        "explore",
        *_LLM_KEYS,
        *MEMORY_KEYS,
    ),
    "static": ("exemplars", "init", *_LLM_KEYS),
    "react": _LLM_KEYS,
    "heuristic": ("policy",),
    "oracle": (),
    "random": (),
}

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_KEY_RE = re.compile(r"[a-z][a-z0-9_]*")
_WORD_RE = re.compile(r"[A-Za-z0-9_.:/+-]+")
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")


class VariantError(ValueError):
    """A label that does not parse or names an unknown agent or setting."""


def parse_value(text: str) -> Any:
    """A label value: ``true``/``false`` -> bool, ``none`` -> None, numbers -> int/float, else the word."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if _INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text


def format_value(value: Any) -> str:
    """The canonical spelling of a value (inverse of :func:`parse_value`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class AgentVariant:
    """One parsed label: the registry ``name``, its ``params`` (sorted key/value pairs), ``untrained``."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    untrained: bool = False

    @property
    def label(self) -> str:
        """The canonical label (what tables and run folders show)."""
        out = self.name
        if self.params:
            out += "[" + ",".join(f"{k}={format_value(v)}" for k, v in self.params) + "]"
        if self.untrained:
            out += "@" + UNTRAINED
        return out

    def __str__(self) -> str:
        return self.label

    @property
    def slug(self) -> str:
        """The label in file names (:func:`label_slug`)."""
        return label_slug(self.label)

    @property
    def settings(self) -> dict[str, Any]:
        """The params as a dict."""
        return dict(self.params)

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    @property
    def is_rememberer(self) -> bool:
        return self.name == "rememberer"

    @property
    def trains(self) -> bool:
        """Whether this row has a training phase (a Rememberer without ``@untrained``)."""
        return self.is_rememberer and not self.untrained

    @property
    def memory_settings(self) -> dict[str, Any]:
        """The params that configure the memory (:data:`MEMORY_KEYS`)."""
        return {k: v for k, v in self.params if k in MEMORY_KEYS}

    @property
    def agent_settings(self) -> dict[str, Any]:
        """The params that go to the agent's constructor (neither memory settings nor ``init``/``exemplars``)."""
        return {k: v for k, v in self.params if k not in MEMORY_KEYS and k not in ("init", "exemplars")}


def parse_variant(text: str, known: dict[str, tuple[str, ...]] | None = None) -> AgentVariant:
    """Parse one label (see the module docstring); raises :class:`VariantError` with the reason.

    ``known`` maps agent names to their allowed keys (default :data:`VARIANT_KEYS`).
    """
    known = VARIANT_KEYS if known is None else known
    raw = str(text)
    s = raw.strip()
    if not s:
        raise VariantError("empty agent label")
    untrained = False
    if "@" in s:
        s, _, stage = s.rpartition("@")
        s, stage = s.strip(), stage.strip()
        if stage != UNTRAINED:
            raise VariantError(f"{raw!r}: unknown stage '@{stage}'; the only stage is '@{UNTRAINED}'")
        untrained = True
    params: dict[str, Any] = {}
    if "[" in s or "]" in s:
        m = re.fullmatch(r"([^\[\]]*)\[([^\[\]]*)\]", s)
        if m is None:
            raise VariantError(f"{raw!r}: settings go in one pair of brackets at the end, e.g. rememberer[n_step=1]")
        s, body = m.group(1).strip(), m.group(2)
        for part in body.split(","):
            part = part.strip()
            if not part:
                raise VariantError(f"{raw!r}: empty setting between commas")
            key, eq, value = (x.strip() for x in part.partition("="))
            if not eq or not _KEY_RE.fullmatch(key) or not value:
                raise VariantError(f"{raw!r}: setting {part!r} is not key=value")
            if not _WORD_RE.fullmatch(value):
                raise VariantError(f"{raw!r}: value {value!r} of {key} may hold only letters, digits and _ . : / + -")
            if key in params:
                raise VariantError(f"{raw!r}: {key} is set twice")
            params[key] = parse_value(value)
    name = s.lower()
    if not _NAME_RE.fullmatch(name):
        raise VariantError(f"{raw!r}: {s!r} is not an agent name")
    if name not in known:
        raise VariantError(f"{raw!r}: unknown agent {name!r}; use one of {', '.join(sorted(known))}")
    bad = sorted(k for k in params if k not in known[name])
    if bad:
        allowed = ", ".join(known[name]) or "none"
        raise VariantError(f"{raw!r}: {name} has no setting {', '.join(bad)}; its settings: {allowed}")
    if untrained and name != "rememberer":
        raise VariantError(f"{raw!r}: '@{UNTRAINED}' applies to the rememberer only ({name} never trains)")
    return AgentVariant(name, tuple(sorted(params.items())), untrained)


def label_slug(label: str) -> str:
    """A file-name-safe form of a label, unique per label: the label itself when it is a plain
    name (``rememberer``), else its characters outside ``[A-Za-z0-9_.-]`` as ``_`` plus 6 hex
    digits of its hash (``rememberer_n_step_1_-1a2b3c``)."""
    text = str(label)
    if re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        return text
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
    return f"{safe}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:6]}"


def split_agent_list(text: str) -> list[str]:
    """Split ``a,b[x=1,y=2],c`` at the commas outside brackets; raises on unbalanced brackets."""
    parts, depth, current = [], 0, []
    for ch in str(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise VariantError(f"{text!r}: ']' without '['")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise VariantError(f"{text!r}: '[' without ']'")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_agent_list(items: "str | list[str] | tuple[str, ...]") -> list[AgentVariant]:
    """Labels (a comma list or a sequence of labels) -> variants, in order; duplicates raise."""
    labels = (
        split_agent_list(items) if isinstance(items, str) else [x for item in items for x in split_agent_list(item)]
    )
    if not labels:
        raise VariantError("no agents given")
    out: list[AgentVariant] = []
    seen: dict[str, str] = {}
    for text in labels:
        v = parse_variant(text)
        if v.label in seen:
            raise VariantError(f"{text!r} and {seen[v.label]!r} are the same variant ({v.label})")
        seen[v.label] = text
        out.append(v)
    return out


def reference_variant(variants: "list[AgentVariant]") -> AgentVariant | None:
    """The row every other row is compared with: plain trained ``rememberer`` if listed, else the
    first trained Rememberer variant, else None (then no paired differences are reported)."""
    trained = [v for v in variants if v.trains]
    for v in trained:
        if not v.params:
            return v
    return trained[0] if trained else None


def reference_label(agents: "list[str] | tuple[str, ...]", preferred: str | None = None) -> str | None:
    """The row the others are compared with: ``preferred`` (a label among ``agents``, any spelling),
    else :func:`reference_variant` (the trained Rememberer), else the first agent; None without agents."""
    variants = parse_agent_list(list(agents)) if agents else []
    if not variants:
        return None
    if preferred:
        want = parse_variant(preferred).label
        if want not in [v.label for v in variants]:
            raise VariantError(
                f"reference {preferred!r} is not among the agents {', '.join(v.label for v in variants)}"
            )
        return want
    ref = reference_variant(variants)
    return (ref or variants[0]).label
