"""A scripted oracle policy for WikiHow: reads the task lines and the screen, never the env state.

It is the env's correctness check (it must solve every canonical task at full reward within
15 steps) and an upper bound / annotation source for memories. It uses only what an agent
sees: ``info["task_lines"]``, ``info["subgoals_done"]``, ``info["page"]`` and the screen text.
"""

from __future__ import annotations

import re

from rlem_gym.envs.wikihow.screens import parse_screen
from rlem_gym.envs.wikihow.site import words_of

#: English stop words, left out of the words a target is matched by (public: the heuristic agent uses them too)
STOP_WORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being "
    "below between both but by can could did do does doing down during each few for from further "
    "had has have having he her here hers herself him himself his how i if in into is it its itself "
    "me more most my myself no nor not of off on once only or other our ours ourselves out over own "
    "same she should so some such than that the their theirs them themselves then there these they "
    "this those through to too under until up very was we were what when where which while who whom "
    "why with would you your yours yourself yourselves".split()
)


def parse_goal(line: str) -> tuple[str, str]:
    """(kind, target) of one task line."""
    s = re.sub(r"^then,\s*", "", line.strip(), flags=re.I)
    if m := re.match(r"^search an article to learn how to (.*?)\.?$", s, re.I):
        return "search", m.group(1)
    if m := re.match(r'^access the article "how to (.*)"$', s, re.I):
        return "article", m.group(1)
    if m := re.match(r"^check the author page of (.*?)\.?$", s, re.I):
        return "author", m.group(1)
    if m := re.match(r"^access the page of category (.*)$", s, re.I):
        return "category", m.group(1)
    if s.lower().startswith("access the about page"):
        return "about", ""
    if s.lower().startswith("check the reference"):
        return "reference", ""
    return "unknown", s


class WikiHowOracle:
    """Solve WikiHow tasks by script: ``act(observation, info) -> action string``."""

    def reset(self) -> None:
        """Nothing to forget: the policy reads only the current screen and info."""

    def act(self, observation: str, info: dict) -> str:
        """The next action for the current screen and the next unfired sub-goal."""
        goals = [parse_goal(line) for line in info["task_lines"]]
        done = info["subgoals_done"]
        if done >= len(goals):
            return "GOBACK"
        kind, target = goals[done]
        rows = parse_screen(observation)
        page = info["page"]
        inputs = info["input_ids"]

        def find(text: str) -> int | None:
            low = text.lower()
            for r in rows:
                if r["text"].strip().lower() == low and r["clickable"]:
                    return r["id"]
            return None

        if kind == "search":
            words = [w for w in words_of(target) if w not in STOP_WORDS]
            return f"INPUT({inputs[0]}, {' '.join(words) or target})"
        if kind == "article":
            hit = find(f"How to {target}")
            if hit is None and page == "category":
                hit = find(target)
            if hit is not None:
                return f"CLICK({hit})"
            return f"INPUT({inputs[0]}, {target})"  # the exact title is ranked first
        if page != "article" and kind in ("author", "category", "reference", "about"):
            if page == "category" and kind == "category":
                hit = find("<")
                if hit is not None:
                    return f"CLICK({hit})"
            return "GOBACK"
        if kind == "about":
            hit = find("trust wikiHow")
            return f"CLICK({hit})" if hit is not None else "SCROLL(UP)"
        if kind == "author":
            hit = find(target)
            if hit is None:
                hit = find("Author Info")
            return f"CLICK({hit})" if hit is not None else "SCROLL(DOWN)"
        if kind == "reference":
            hit = find("References")
            return f"CLICK({hit})" if hit is not None else "SCROLL(DOWN)"
        if kind == "category":
            hit = find(target.upper())
            if hit is None:
                hit = find(target)
            if hit is not None:
                return f"CLICK({hit})"
            # climb: open the parent crumb, then follow "<" links on the category pages
            for r in rows:
                if r["clickable"] and r["text"].isupper() and r["text"] not in ("CATEGORIES",) and r["tag"] == "p":
                    return f"CLICK({r['id']})"
            return "SCROLL(UP)"
        return "GOBACK"
