"""The WikiHow adapter: ``CLICK/INPUT/SCROLL/GOBACK`` grammar, command-list memory key, exemplars.

The default exemplars and the ReAct example use real screens of the wikiHow app, recorded by the
Rememberer authors for the task "clean utensils" (from the shipped data's
``derived/rememberer_debug_screens.json``; wikiHow content, CC BY-NC-SA 3.0). The search-results
screen is cut after its second result to save prompt tokens.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rlem_gym.advice import AdviceLine
from rlem_gym.agents.adapters import EnvAdapter, choose
from rlem_gym.llm.constraint import ActionConstraint
from rlem_gym.envs.wikihow.oracle import parse_goal
from rlem_gym.envs.wikihow.screens import check_screen_view, compact_screen
from rlem_gym.prompts import (
    WIKIHOW_PREAMBLE,
    WIKIHOW_REACT_PREAMBLE,
    Exemplar,
    render_wikihow_input,
)
from rlem_gym.trajectory import Situation

if TYPE_CHECKING:
    from rlem_gym.memory.embeddings import Embedder
    from rlem_gym.memory.similarity import Matcher

_ACTION_RE = re.compile(
    r"\b(?:(CLICK)\s*\(\s*(\d+)\s*\)?"
    r"|(INPUT)\s*\(\s*(\d+)\s*,\s*([^)\n]*)\)?"
    r"|(SCROLL)\s*\(\s*(UP|DOWN|LEFT|RIGHT)\b\s*\)?"
    r"|(GO\s*BACK))(?!\w)",
    re.IGNORECASE,
)
_CLICKABLE_ID_RE = re.compile(r'id="(\d+)"\s+clickable="true"')
DIRECTIONS = ("UP", "DOWN", "LEFT", "RIGHT")
NOOP_ACTION = "NOOP"


def _ids(info: dict[str, Any], key: str) -> set[int]:
    out = set()
    for value in info.get(key) or ():
        try:
            out.add(int(value))
        except (TypeError, ValueError):
            continue
    return out


def search_keywords(task_lines: Sequence[str]) -> str:
    """Key words for a fallback search, from the task's ``Search an article to learn how to X.`` line."""
    for line in task_lines:
        kind, target = parse_goal(str(line))
        if kind == "search" and target.strip():
            return target.strip()
    return " ".join(str(task_lines[0]).split()[:6]) if task_lines else "wikihow"


class WikiHowAdapter(EnvAdapter):
    """WikiHow: memory key = (command list, screen HTML, instruction); ids from ``clickable_ids``/``input_ids``.

    Args:
        screen: how prompts show a screen: ``"full"`` (the app's HTML, as the official prompts do)
            or ``"compact"`` (one ``[id] tag: label`` line per element an action can use,
            :func:`~rlem_gym.envs.wikihow.screens.compact_screen`; a method change: about 2.4x fewer
            tokens per screen, 1.7x per Rememberer prompt). Memory keys keep the full screen either way, so retrieval
            is the same.
    """

    name = "wikihow"
    noop_action = NOOP_ACTION
    preamble = WIKIHOW_PREAMBLE
    react_preamble = WIKIHOW_REACT_PREAMBLE

    def __init__(self, screen: str = "full") -> None:
        self.screen = check_screen_view(screen)

    def _view(self, text: str) -> str:
        return compact_screen(text) if self.screen == "compact" else text

    # -- prompt parts -----------------------------------------------------------------------------
    def render_input(self, inp: Situation) -> str:
        return render_wikihow_input(replace(inp, observation=self._view(inp.observation)))

    def memory_key(self, obs: str, info: dict[str, Any]) -> tuple[str, str, str]:
        lines = info.get("task_lines") or []
        task = "\n".join(str(x) for x in lines) if lines else str(info.get("task", ""))
        return (task, str(obs or ""), str(info.get("instruction", "")))

    def available_actions(self, info: dict[str, Any]) -> tuple[str, ...]:
        return ()  # the screen itself shows what is clickable; the official prompt lists nothing

    def react_observation(self, obs: str, info: dict[str, Any], first: bool) -> str:
        task, screen, instruction = self.memory_key(obs, info)
        head = f"Task:\n{task}\n" if first else ""
        return f"{head}Screen:\n{self._view(screen)}\nInstruction:\n{instruction}"

    def react_example(self) -> str:
        return self._view(REACT_EXAMPLE)

    def default_exemplars(self) -> list[Exemplar]:
        return list(STATIC_EXEMPLARS)

    # -- actions --------------------------------------------------------------------------------
    def extract_actions(self, text: str) -> list[str]:
        found = []
        for m in _ACTION_RE.finditer(text or ""):
            if m.group(1):
                found.append(f"CLICK({int(m.group(2))})")
            elif m.group(3):
                words = m.group(5).strip().strip("\"'`").strip()
                if words:
                    found.append(f"INPUT({int(m.group(4))}, {' '.join(words.split())})")
            elif m.group(6):
                found.append(f"SCROLL({m.group(7).upper()})")
            elif m.group(8):
                found.append("GOBACK")
        return found

    def is_valid_canonical(self, action: str, info: dict[str, Any]) -> bool:
        if action == "GOBACK" or action.startswith("SCROLL("):
            return True
        element = int(re.match(r"\w+\((\d+)", action).group(1))
        if action.startswith("CLICK("):
            return element in _ids(info, "clickable_ids")
        return element in _ids(info, "input_ids")

    def fallback_candidates(self, obs: str, info: dict[str, Any]) -> list[str]:
        out = []
        inputs = sorted(_ids(info, "input_ids"))
        if inputs:
            out.append(f"INPUT({inputs[0]}, {search_keywords(info.get('task_lines') or [])})")
        out.append("SCROLL(DOWN)")
        out += [f"CLICK({i})" for i in sorted(_ids(info, "clickable_ids"))]
        out += ["SCROLL(UP)", "GOBACK"]
        return out

    def action_constraint(self, info: dict[str, Any]) -> ActionConstraint:
        """``CLICK(id)`` per clickable id, ``INPUT(id, <text>)`` per input id, ``SCROLL(dir)``, ``GOBACK``."""
        literals = [f"CLICK({i})" for i in sorted(_ids(info, "clickable_ids"))]
        literals += [f"SCROLL({d})" for d in DIRECTIONS] + ["GOBACK"]
        return ActionConstraint.of(literals, ((f"INPUT({i}, ", ")") for i in sorted(_ids(info, "input_ids"))))

    def random_action(self, observation: str, available: Sequence[str], rng: np.random.Generator) -> str | None:
        choices = [f"CLICK({i})" for i in _CLICKABLE_ID_RE.findall(observation or "")]
        choices += [f"SCROLL({d})" for d in DIRECTIONS]
        return choose(rng, choices)

    # -- memory ---------------------------------------------------------------------------------
    def make_matcher(self, embedder: "Embedder | None" = None, lam: float = 0.5) -> "Matcher":
        """The paper's ``lcs+inspat`` matcher: command-list LCS + instruction-pattern equality."""
        from rlem_gym.envs.wikihow import instruction_pattern
        from rlem_gym.memory.similarity import WikiHowMatcher

        return WikiHowMatcher(instruction_pattern, lam=lam, embedder=embedder)


# ------------------------------------------------------------------------- shipped examples
_TASK = """Search an article to learn how to clean utensils.
Then, access the article "How to Clean Utensils"
Then, check the reference list"""

_HOME_SCREEN = """<button alt="Open navigation drawer" id="0" clickable="true"></button>
<img class="wikihow toolbar logo" id="1" clickable="false">
<img class="search button" alt="Search" id="2" clickable="true">
<div class="webView" id="3" clickable="true"></div>
<div class="statusBarBackground" id="4" clickable="false"></div>"""

_RESULTS_SCREEN = """<button alt="Open navigation drawer" id="0" clickable="true"></button>
<input class="search src text" value="clean utensils" type="text" id="1" clickable="true">
<img class="search close btn" alt="Clear query" id="2" clickable="true">
<div id="3" clickable="true">How to Clean Utensils</div>
<div id="4" clickable="true">• </div>
<p id="5" clickable="true">26,719 views</p>
<div id="6" clickable="true">• </div>
<p id="7" clickable="true">Updated</p>
<p id="8" clickable="true"> 2 years ago</p>
<div id="9" clickable="true">• </div>
<p id="10" clickable="true">Expert Co-Authored</p>
<div id="11" clickable="true">How to Clean Copper Utensils</div>
<div id="12" clickable="true">• </div>
<p id="13" clickable="true">9,828 views</p>
<div id="14" clickable="true">• </div>
<p id="15" clickable="true">Updated</p>
<p id="16" clickable="true"> 2 years ago</p>
<div id="17" clickable="true">• </div>
<p id="18" clickable="true">Expert Co-Authored</p>"""

_ARTICLE_SCREEN = """<button alt="Open navigation drawer" id="0" clickable="true"></button>
<img class="search button" alt="Search" id="1" clickable="true">
<img alt="More options" id="2" clickable="true">
<p id="3" clickable="true">Learn why people </p>
<p id="4" clickable="true">trust wikiHow</p>
<p id="5" clickable="true">FOOD AND ENTERTAINING</p>
<p id="6" clickable="false"> »</p>
<p id="7" clickable="true">KITCHEN UTENSILS</p>
<p id="8" clickable="true">How to Clean Utensils</p>
<p id="9" clickable="false">Co-authored by</p>
<p id="10" clickable="false"> </p>
<p id="11" clickable="true">Melanie Garcia</p>
<button id="12" clickable="true">Last Updated: March 19, 2021</button>
<p id="13" clickable="true">References</p>
<div id="14" clickable="false">Utensils are quick and easy to clean. Simply wash the utensils with hot water and soap, or use the natural cleaning power of the sun, salt, and lemon if you’re cleaning wooden utensils. If you want to sterilise the utensils, try soaking them in boiling water. Before you know it your utensils will be sparkling clean.</div>
<div id="15" clickable="false">Method 1 Method 1 of 3: Washing Utensils by Hand</div>
<div id="16" clickable="false"></div>
<div id="17" clickable="false"></div>
<div id="18" clickable="false">1</div>
<div class="statusBarBackground" id="19" clickable="false"></div>"""

STATIC_EXEMPLARS: tuple[Exemplar, ...] = (
    Exemplar(
        Situation(task=_TASK, observation=_HOME_SCREEN),
        encouraged=(AdviceLine("INPUT(2, clean utensils)", 2.0, "The search button takes the key words of the task."),),
        discouraged=(AdviceLine("SCROLL(RIGHT)", 0.0, "Scrolling the home screen does not find the article."),),
    ),
    Exemplar(
        Situation(task=_TASK, observation=_RESULTS_SCREEN, last_actions=("INPUT(2, clean utensils)",)),
        encouraged=(AdviceLine("CLICK(3)", 2.0, "Element 3 is the article How to Clean Utensils."),),
        discouraged=(AdviceLine("CLICK(11)", 0.0, "How to Clean Copper Utensils is another article."),),
    ),
    Exemplar(
        Situation(
            task=_TASK,
            observation=_ARTICLE_SCREEN,
            instruction="Check the reference list",
            last_actions=("INPUT(2, clean utensils)", "CLICK(3)"),
            last_reward=1.0,
            total_reward=1.0,
        ),
        encouraged=(AdviceLine("CLICK(13)", 1.0, "Element 13 opens the References of the article."),),
        discouraged=(AdviceLine("CLICK(11)", 0.0, "Element 11 is the author, not the reference list."),),
    ),
)

REACT_EXAMPLE = f"""Task:
{_TASK}
Screen:
{_HOME_SCREEN}
Instruction:

Action: think[I must first search for the article. Element 2 is the search button, so I type the key words there.]
Observation: OK.
Action: INPUT(2, clean utensils)
Observation:
Screen:
{_RESULTS_SCREEN}
Instruction:

Action: think[Element 3 is exactly "How to Clean Utensils".]
Observation: OK.
Action: CLICK(3)
Observation:
Screen:
{_ARTICLE_SCREEN}
Instruction:
Check the reference list
Action: think[The instruction asks for the reference list, and element 13 says References.]
Observation: OK.
Action: CLICK(13)"""
