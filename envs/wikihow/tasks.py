"""WikiHow task sets and their sub-goal chains (from the shipped bundle).

A task is the Mobile-Env command list plus one sub-goal per line: ``search`` (a submitted
query holds a keyword of the title), ``article`` (that article is on screen), then optionally
``about`` / ``author`` / ``category`` / ``reference`` and a second ``article``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache

from rlem_gym.envs.wikihow.site import load_bundle, words_of

#: the task-set names accepted by ``WikiHowEnv(task_set=...)``.
TASK_SETS = ("microcanon70", "canonical178", "train_S0", "train_S1")


@dataclass(frozen=True)
class SubGoal:
    """One sub-goal: its kind and target (article title, author name or category name; for
    ``reference`` the task's article, whose reference list is meant)."""

    kind: str
    """"search", "article", "about", "author", "category" or "reference"."""
    target: str = ""


@dataclass(frozen=True)
class Task:
    """One WikiHow task: id, the command lines the agent sees, and its sub-goal chain."""

    task_id: str
    file_stem: str
    title: str
    """Exact title of the article to search for (without "How to ")."""
    title_lower: str
    subgoals: tuple[SubGoal, ...]
    keywords: tuple[str, ...]
    """Search keywords: the title's words minus the Mobile-Env stop words."""
    synthetic_targets: bool
    """True where the author / category targets were synthesised (no real task file)."""

    @cached_property
    def lines(self) -> tuple[str, ...]:
        """The command list shown to the agent (first line plus one "Then, ..." per sub-goal)."""
        first = f"Search an article to learn how to {self.title_lower}."
        return (first, *("Then, " + _lower_first(instruction_for(g)) for g in self.subgoals[1:]))

    @cached_property
    def keyword_rx(self) -> re.Pattern[str]:
        """Matches a submitted query that holds a search keyword (the whole title when there are none)."""
        kws = "|".join(re.escape(k) for k in self.keywords) or re.escape(self.title_lower)
        return re.compile(rf"\b({kws})\b", re.I)

    def instruction_after(self, done: int) -> str:
        """The instruction revealed once ``done`` sub-goals have fired ("" before any)."""
        if done <= 0 or done >= len(self.subgoals):
            return ""
        return instruction_for(self.subgoals[done])


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:]


def instruction_for(goal: SubGoal) -> str:
    """The Mobile-Env instruction text of a sub-goal (as the real instruction listener emits it)."""
    if goal.kind == "article":
        return f'Access the article "How to {goal.target}"'
    if goal.kind == "author":
        return f"Check the author page of {goal.target}."
    if goal.kind == "category":
        return f"Access the page of category {goal.target}"
    if goal.kind == "about":
        return "Access the about page to learn why people trust wikihow."
    if goal.kind == "reference":
        return "Check the reference list"
    return "Search an article"


def keywords_of(title_lower: str, stopwords: frozenset[str]) -> tuple[str, ...]:
    """Title words minus stop words, in order, without duplicates."""
    return tuple(dict.fromkeys(w for w in words_of(title_lower) if w not in stopwords))


@lru_cache(maxsize=1)
def all_tasks() -> dict[str, Task]:
    """Every canonical task by id (the 178 of the bundle)."""
    bundle = load_bundle()
    stop = frozenset(bundle["stopwords"])
    out: dict[str, Task] = {}
    for rec in bundle["tasks"]:
        title = rec["steps"][1]["title"]
        goals = []
        for s in rec["steps"]:
            kind = s["type"]
            target = title if kind == "reference" else s.get("title") or s.get("author") or s.get("category") or ""
            goals.append(SubGoal(kind, target))
        out[rec["task_id"]] = Task(
            task_id=rec["task_id"],
            file_stem=rec["file_stem"],
            title=title,
            title_lower=rec["title_lower"],
            subgoals=tuple(goals),
            keywords=keywords_of(rec["title_lower"], stop),
            synthetic_targets=rec["synthetic_targets"],
        )
    return out


def task_set(spec: str | list[str] | tuple[str, ...]) -> list[Task]:
    """The tasks of a named set, in its order, or of an explicit list of task ids / file stems."""
    tasks = all_tasks()
    if isinstance(spec, str):
        sets = load_bundle()["sets"]
        if spec not in sets:
            raise ValueError(f"unknown WikiHow task_set {spec!r}; use one of {list(TASK_SETS)} or a list of task ids")
        return [tasks[t] for t in sets[spec]]
    by_stem = {t.file_stem: t for t in tasks.values()}
    out = []
    for key in spec:
        if key in tasks:
            out.append(tasks[key])
        elif key in by_stem:
            out.append(by_stem[key])
        else:
            raise ValueError(f"unknown WikiHow task id {key!r}; see rlem_gym.envs.wikihow.tasks.all_tasks()")
    if not out:
        raise ValueError("task_set list is empty; pass at least one task id")
    return out
