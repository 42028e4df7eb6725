"""Which tokens may come next under an :class:`ActionConstraint`: the token mask for backends that decode themselves.

The HF backend runs its own decoding loop, so it enforces a constraint by masking the logits:
at each step only tokens ``t`` whose text keeps ``generated + t`` a prefix of some allowed action
keep their score. Testing all ~150k vocabulary entries in Python at every step would cost tens of
milliseconds, so :class:`VocabIndex` finds the candidates by lookups instead:

- tokens that are a prefix of the rest of a literal (or of a template's fixed part): one
  dictionary lookup per prefix length;
- tokens that run past a template's fixed part into its free text: a range of the sorted token
  strings (all strings that start with the fixed rest are contiguous);
- inside a template's free text: a precomputed mask of every token without a newline and
  without the template's closing character, plus the few tokens that close it.

Tokens whose text is not valid UTF-8 on its own (byte fragments) and special tokens are never
candidates. Built once per tokenizer (a few seconds for a 150k vocabulary) and cached.
"""

from __future__ import annotations

import bisect
from typing import Any, Sequence

import numpy as np

from rlem_gym.llm.constraint import ActionConstraint


def eos_only(scores: np.ndarray, eos: int) -> np.ndarray:
    """Scores (a new array shaped like ``scores``) that leave end-of-sequence as the only choice."""
    out = np.full_like(scores, -np.inf)
    out[eos] = 0.0
    return out


class VocabIndex:
    """The decoded text of every token, indexed for prefix lookups.

    Args:
        texts: ``texts[i]`` = the text token ``i`` adds when decoded (``None`` = never allowed).
    """

    def __init__(self, texts: Sequence[str | None]) -> None:
        self.size = len(texts)
        self.texts = list(texts)
        self.by_text: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            if t:
                self.by_text.setdefault(t, []).append(i)
        self.sorted_texts = sorted(self.by_text)
        self.max_len = max((len(t) for t in self.sorted_texts), default=1)
        self._free_masks: dict[str, np.ndarray] = {}
        self._closers: dict[str, list[int]] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, special_ids: Sequence[int] = ()) -> "VocabIndex":
        """Decode each id of a HF tokenizer once (special and byte-fragment tokens excluded)."""
        n = len(tokenizer)
        special = set(int(i) for i in special_ids) | set(getattr(tokenizer, "all_special_ids", []) or [])
        texts: list[str | None] = []
        for i in range(n):
            if i in special:
                texts.append(None)
                continue
            t = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            texts.append(t if t and "\ufffd" not in t else None)
        return cls(texts)

    # ------------------------------------------------------------------------- candidate sets
    def _prefixes_of(self, rest: str) -> list[int]:
        out: list[int] = []
        for n in range(1, min(len(rest), self.max_len) + 1):
            out.extend(self.by_text.get(rest[:n], ()))
        return out

    def _starting_with(self, rest: str) -> list[str]:
        lo = bisect.bisect_left(self.sorted_texts, rest)
        hi = bisect.bisect_left(self.sorted_texts, rest + "\U0010ffff")
        return self.sorted_texts[lo:hi]

    def _free_mask(self, banned: str) -> np.ndarray:
        """Tokens whose text holds none of the ``banned`` characters (free-text continuations).

        Also lists, under the same key, the tokens that hold the closing character (``banned[2]``,
        see :meth:`ActionConstraint.banned`) but no newline: the candidates that end the free text.
        """
        mask = self._free_masks.get(banned)
        if mask is None:
            mask = np.array([bool(t) and not any(c in t for c in banned) for t in self.texts])
            self._free_masks[banned] = mask
            closer = banned[2]
            self._closers[banned] = [i for i, t in enumerate(self.texts) if t and closer in t and "\n" not in t]
        return mask

    @classmethod
    def from_llama(cls, llm: Any) -> "VocabIndex":
        """Decode each id of a ``llama_cpp.Llama`` model's vocabulary once (control tokens and byte fragments excluded)."""
        texts: list[str | None] = []
        for i in range(int(llm.n_vocab())):
            raw = llm.detokenize([i], special=False)
            try:
                t = raw.decode("utf-8")
            except UnicodeDecodeError:
                t = ""
            texts.append(t or None)
        return cls(texts)

    def text_of(self, ids: Sequence[int]) -> str:
        """The text of generated token ids (their decoded pieces joined)."""
        return "".join(self.texts[int(i)] or "" for i in ids if 0 <= int(i) < self.size)

    def next_mask(self, constraint: ActionConstraint, text: str) -> np.ndarray | None:
        """The tokens that may follow ``text`` in the action slot, or ``None`` when decoding must end.

        Decoding ends when ``text`` is an action that no allowed action extends (or, which cannot
        happen for a prefix the constraint allows, when no token may follow: never loop forever).
        Shared by every backend that masks logits itself (HF, llama.cpp's logits processor).
        """
        if constraint.complete(text):
            return None
        allowed = self.allowed(constraint, text)
        return allowed if allowed.any() else None

    @staticmethod
    def may_end(constraint: ActionConstraint, text: str, eos_score: float, best_allowed: float) -> bool:
        """Whether end-of-sequence may end ``text`` here: it is an action and EOS scores at least as
        high as every allowed continuation (an action that a longer one extends, e.g. ``click[a]``
        beside ``click[ab]``)."""
        return bool(text) and constraint.matches(text) and eos_score >= best_allowed

    def constrain(self, scores: np.ndarray, constraint: ActionConstraint, text: str, eos: int) -> np.ndarray:
        """``scores`` with every token the constraint forbids after ``text`` set to -inf (a new array);
        when decoding must end (:meth:`next_mask`, :meth:`may_end`), end-of-sequence (``eos``) is the
        only choice."""
        allowed = self.next_mask(constraint, text)
        if allowed is None:
            return eos_only(scores, eos)
        out = np.full_like(scores, -np.inf)
        n = min(len(allowed), len(scores))
        out[:n] = np.where(allowed[:n], scores[:n], -np.inf)
        if self.may_end(constraint, text, float(scores[eos]), float(out.max())):
            return eos_only(scores, eos)
        return out

    def allowed(self, constraint: ActionConstraint, text: str) -> np.ndarray:
        """A boolean mask over the vocabulary: the tokens that may follow ``text`` in the action slot."""
        mask = np.zeros(self.size, dtype=bool)
        ids: list[int] = []
        for lit in constraint.literals:
            if lit.startswith(text) and len(lit) > len(text):
                ids.extend(self._prefixes_of(lit[len(text) :]))
        for prefix, suffix in constraint.templates:
            if len(text) < len(prefix):
                if not prefix.startswith(text):
                    continue
                rest = prefix[len(text) :]
                ids.extend(self._prefixes_of(rest))
                for t in self._starting_with(rest):  # tokens that run into the free text
                    if len(t) > len(rest) and constraint.allows_prefix(text + t):
                        ids.extend(self.by_text[t])
                continue
            if not constraint.allows_prefix(text) or not text.startswith(prefix):
                continue
            free = text[len(prefix) :]
            cut = free.find(suffix[0])
            if cut != -1:  # inside the closing suffix
                ids.extend(self._prefixes_of(suffix[len(free) - cut :]))
                continue
            room = constraint.max_free_chars - len(free)
            banned = constraint.banned(suffix)
            free_mask = self._free_mask(banned)
            if room >= self.max_len:
                mask |= free_mask
            else:  # near the length bound: test the free tokens one by one (rare)
                ids.extend(int(i) for i in np.flatnonzero(free_mask) if len(self.texts[i] or "") <= room)
            for i in self._closers[banned]:
                if constraint.allows_prefix(text + (self.texts[i] or "")):
                    ids.append(i)
        if ids:
            mask[np.asarray(ids, dtype=np.int64)] = True
        return mask
