"""The ``heuristic`` reference agent: a naive rule per env, no LLM, no memory (the table's floor).

WebShop, the WebShop paper's rule baseline (Yao et al. 2022, reported at score 45.6 and SR 9.6% on
the full data and human goals):

1. on the search page, search the instruction with its price clause dropped;
2. on the results page, click the first product;
3. on the product page, ``click[buy now]`` (no option is chosen);
4. on a description / features / reviews page (never reached by steps 1-3), ``click[< prev]``.

WikiHow, two rules of ours that use nothing beyond the task text and the screen (no parsing of
what each task line asks for, no ``info["subgoals_done"]`` or ``info["page"]``). Both start the
same way: while no search was typed in this episode and the screen has an input, type the first
task line's subject into it (``Search an article to learn how to X.`` -> ``X``, the template cut
off as WebShop's rule cuts its price clause). Then:

- ``rule`` (the default, WebShop's rule carried over): click the first search result (the first
  clickable ``How to ...`` text on screen), then ``SCROLL(DOWN)`` until the episode ends. It
  completes the search and, when the search ranks the article first, the article sub-goal; never
  a later one.
- ``keywords`` (``heuristic[policy=keywords]``): click the clickable element whose text shares
  the most content words with the task text (all lines; English stop words and the command
  template's own words such as "access" or "article" do not count; a trailing plural "s" is
  ignored), skipping texts it already clicked in this episode, ties to the element higher on the
  screen; when none shares a word, ``SCROLL(DOWN)`` at most 3 times in a row, then ``GOBACK``. It
  clicks "trust wikiHow", "References" or an author's name whenever that text is on screen, but it
  cannot climb a category tree or tell which task line comes next. It is a strong control: on the
  70 micro-canonical tasks it completes almost every task (see the README), which says how much
  of WikiHow is keyword matching.
"""

from __future__ import annotations

import re
from typing import Any

from rlem_gym.agents.scripted import ScriptedAgent
from rlem_gym.agents.webshop_adapter import PRICE_CLAUSE_RE
from rlem_gym.envs.wikihow.oracle import STOP_WORDS as ENGLISH_STOPWORDS
from rlem_gym.envs.wikihow.screens import parse_screen

#: WebShop clickables that are not products
_WEBSHOP_NAVIGATION = frozenset({"back to search", "next >", "< prev", "search"})


def webshop_rule_query(instruction: str) -> str:
    """The rule baseline's search: the instruction with its ``, and price lower than X dollars`` clause dropped."""
    text = PRICE_CLAUSE_RE.sub("", str(instruction or "")).strip()
    return " ".join(text.split()) or "product"


class WebShopRulePolicy:
    """Search the instruction (price clause dropped), click the first result, buy now."""

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        """Nothing to remember between steps: the rule reads only the current page."""

    def act(self, obs: str, info: dict[str, Any]) -> tuple[str, str]:
        avail = info.get("available_actions") or {}
        clickables = [" ".join(str(c).split()).lower() for c in avail.get("clickables", ())]
        if avail.get("has_search_bar"):
            return f"search[{webshop_rule_query(info.get('instruction', ''))}]", "rule: search the instruction"
        if "buy now" in clickables:
            return "click[buy now]", "rule: buy the opened product"
        products = [c for c in clickables if c and c not in _WEBSHOP_NAVIGATION]
        if products:
            return f"click[{products[0]}]", "rule: open the first result"
        for nav in ("< prev", "back to search"):
            if nav in clickables:
                return f"click[{nav}]", "rule: go back"
        return "click[buy now]", "rule: nothing else to do"


#: words of the WikiHow command template (``Search an article to learn how to ...``, ``Then, access
#: the page of category ...``) that say what to do rather than what to find
_TEMPLATE_WORDS = frozenset("search article learn access check then page category list".split())
_SEARCH_LINE_RE = re.compile(r"^\s*search an article to learn how to\s+(.*?)\.?\s*$", re.IGNORECASE)
_WORD_RE = re.compile(r"[\w']+")
#: SCROLL(DOWN) at most this many times in a row before GOBACK
_MAX_SCROLLS = 3


def content_words(text: str) -> set[str]:
    """Lower-case content words of ``text``: stop and template words dropped, a plural ``s`` cut."""
    out = set()
    for w in _WORD_RE.findall(str(text).lower()):
        if w in ENGLISH_STOPWORDS or w in _TEMPLATE_WORDS:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(w)
    return out


def wikihow_search_text(task_lines: list[str]) -> str:
    """What the heuristic types into the search box: the first task line's subject (the whole line when it has no template)."""
    first = str(task_lines[0]) if task_lines else ""
    m = _SEARCH_LINE_RE.match(first)
    return (m.group(1) if m else first).strip() or "wikihow"


def _task_lines(info: dict[str, Any]) -> list[str]:
    return [str(x) for x in (info.get("task_lines") or [])] or [str(info.get("task", ""))]


class WikiHowFirstResultPolicy:
    """Search the first task line's subject, click the first result, then scroll (WebShop's rule on WikiHow)."""

    def __init__(self) -> None:
        self._searched = False
        self._opened = False

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        self._searched = False
        self._opened = False

    def act(self, obs: str, info: dict[str, Any]) -> tuple[str, str]:
        inputs = sorted(int(i) for i in (info.get("input_ids") or ()))
        if not self._searched and inputs:
            self._searched = True
            return f"INPUT({inputs[0]}, {wikihow_search_text(_task_lines(info))})", "rule: search the task's subject"
        if self._searched and not self._opened:
            for row in parse_screen(obs or ""):
                if row["clickable"] and row["id"] >= 0 and row["text"].strip().lower().startswith("how to "):
                    self._opened = True
                    return f"CLICK({row['id']})", "rule: open the first result"
        return "SCROLL(DOWN)", "rule: nothing else to do"


class WikiHowKeywordPolicy:
    """Search the first task line's subject, then click whatever on screen shares most words with the task."""

    def __init__(self) -> None:
        self._searched = False
        self._clicked: set[str] = set()
        self._scrolls = 0

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        self._searched = False
        self._clicked = set()
        self._scrolls = 0

    def act(self, obs: str, info: dict[str, Any]) -> tuple[str, str]:
        lines = _task_lines(info)
        inputs = sorted(int(i) for i in (info.get("input_ids") or ()))
        if not self._searched and inputs:
            self._searched = True
            self._scrolls = 0
            return f"INPUT({inputs[0]}, {wikihow_search_text(lines)})", "rule: search the task's subject"
        wanted = content_words(" ".join(lines))
        best: tuple[int, int, int, str] | None = None  # (overlap, -position, id, text): most words, then highest
        for pos, row in enumerate(parse_screen(obs or "")):
            text = " ".join(row["text"].split())
            if not row["clickable"] or row["id"] < 0 or not text or text.lower() in self._clicked:
                continue
            overlap = len(content_words(text) & wanted)
            if overlap > 0 and (best is None or (overlap, -pos) > best[:2]):
                best = (overlap, -pos, row["id"], text)
        if best is not None:
            overlap, _, element, text = best
            self._clicked.add(text.lower())
            self._scrolls = 0
            return f"CLICK({element})", f"rule: {overlap} task word(s) in {text[:60]!r}"
        if self._scrolls < _MAX_SCROLLS:
            self._scrolls += 1
            return "SCROLL(DOWN)", "rule: nothing on screen matches the task"
        self._scrolls = 0
        return "GOBACK", "rule: nothing matched after scrolling"


class HeuristicAgent(ScriptedAgent):
    """The naive rule baseline of each env (see the module docstring); needs no LLM."""

    name = "heuristic"
    policies = {
        "webshop": {"rule": WebShopRulePolicy},
        "wikihow": {"rule": WikiHowFirstResultPolicy, "keywords": WikiHowKeywordPolicy},
    }
