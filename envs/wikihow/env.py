"""WikiHowEnv: the Mobile-Env WikiHow task set as a pure-Python Gymnasium text environment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import gymnasium as gym

from rlem_gym.envs.common import check_option_keys, int_option
from rlem_gym.envs.wikihow import screens
from rlem_gym.envs.wikihow.search import TitleSearch
from rlem_gym.envs.wikihow.site import Site, bundle_path, default_site, stable_int
from rlem_gym.envs.wikihow.tasks import SubGoal, Task
from rlem_gym.envs.wikihow.tasks import task_set as load_task_set
from rlem_gym.spaces import sanitize, text_space

_CLICK = re.compile(r"^CLICK\s*\(\s*(-?\d+)\s*\)$", re.I)
_INPUT = re.compile(r"^INPUT\s*\(\s*(-?\d+)\s*,(.*)\)$", re.I | re.S)
_SCROLL = re.compile(r"^SCROLL\s*\(\s*(UP|DOWN|LEFT|RIGHT)\s*\)$", re.I)
_GOBACK = re.compile(r"^GOBACK(?:\s*\(\s*\))?$", re.I)
_MAX_QUERY = 200


@lru_cache(maxsize=1)
def default_search() -> TitleSearch:
    """The process-wide BM25 index over every title of :func:`default_site`."""
    return TitleSearch(default_site().all_titles)


def parse_action(action: str) -> tuple[str, object, str]:
    """``(verb, argument, error)`` for an action string; error is "" when the syntax is valid."""
    if not isinstance(action, str):
        return "", None, f"action must be a string, got {type(action).__name__}"
    a = action.strip()
    if m := _CLICK.match(a):
        return "CLICK", int(m.group(1)), ""
    if m := _INPUT.match(a):
        text = m.group(2).strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            text = text[1:-1].strip()
        return "INPUT", (int(m.group(1)), text), ""
    if m := _SCROLL.match(a):
        return "SCROLL", m.group(1).upper(), ""
    if _GOBACK.match(a):
        return "GOBACK", None, ""
    return "", None, f"cannot parse {a[:60]!r}; use CLICK(id), INPUT(id, text), SCROLL(UP|DOWN|LEFT|RIGHT) or GOBACK"


@dataclass(frozen=True)
class Screen:
    """A rendered screen: its elements, the observation text and the ids ``info`` reports."""

    elements: list[screens.Element]
    obs: str
    clickable_ids: tuple[int, ...]
    input_ids: tuple[int, ...]


@dataclass(frozen=True)
class ViewState:
    """Where the app is: page kind, its key (title / query / name), scroll and breadcrumb offset."""

    page: str
    key: str = ""
    scroll: int = 0
    crumb: int = 0


class WikiHowEnv(gym.Env):
    """The WikiHow task set of Mobile-Env as a text environment (no emulator, no replay data).

    ## Description
    The agent operates a simulated wikiHow app to complete a chain of sub-goals: search for an
    article, open it, then open the About page, an author page, a category page or the reference
    list, sometimes followed by a second article. Tasks are the real Mobile-Env task definitions
    (70 micro-canonical, 178 canonical); pages use real facts where they were captured and
    deterministic, title-seeded synthetic text elsewhere (see ``data/SOURCE.md``).

    ## Action Space
    A string (``rlem_gym.spaces.text_space()``) in the paper's grammar: ``CLICK(id)``,
    ``INPUT(id, text)`` (type into an input or search button and press Enter: submits a search),
    ``SCROLL(UP|DOWN|LEFT|RIGHT)`` (LEFT/RIGHT move an article's breadcrumb strip) and ``GOBACK``.

    ## Observation Space
    A string: one line of simplified HTML per visible leaf view, e.g.
    ``<div id="3" clickable="true">How to Make a Lei</div>``; ids are screen positions.

    ## Starting State
    The app's home screen. The task is ``options["task_index"]`` (position in the task set),
    ``options["task_id"]``, or drawn with ``self.np_random``.

    ## Rewards
    +1 for each sub-goal, once, in order; 0 otherwise (invalid actions included).

    ## Episode End
    Terminated when the last sub-goal fires. Truncated by the registered TimeLimit (15 steps) or,
    when ``max_steps`` is given, by the env itself after that many steps.

    ## Information
    ``task_lines`` (command list), ``instruction`` (latest revealed instruction, "" before the
    first sub-goal), ``subgoals_total``, ``subgoals_done``, ``page`` (home / search / article /
    author / category / about / reference), ``task_id``, ``task_index``, ``clickable_ids``,
    ``input_ids`` and ``last_action_error`` ("" when the action was valid; a ``step()`` before the
    first ``reset()`` changes nothing and reports "call reset() before step()").

    ## Arguments
    ``gym.make("rlem_gym/WikiHow-v0", task_set="microcanon70", max_steps=None, render_mode="ansi")``:
    ``task_set`` is "microcanon70", "canonical178", "train_S0", "train_S1" or a list of task ids
    (or file stems); ``max_steps`` is an optional step cap inside the env; ``render_mode`` "ansi"
    makes ``render()`` return the screen text.

    ## References
    Zhang et al., "Large Language Models Are Semi-Parametric Reinforcement Learning Agents"
    (Rememberer, NeurIPS 2023); Zhang et al., "Mobile-Env" (X-LANCE/Mobile-Env).

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task_set: str | list[str] | tuple[str, ...] = "microcanon70",
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")
        self.render_mode = render_mode
        self.max_steps = max_steps
        self.tasks: list[Task] = load_task_set(task_set)
        self.num_tasks = len(self.tasks)
        self.site: Site = default_site()
        self._search = default_search()
        self._editorial = self.site.bundle.get("author_editorial", "")
        self.observation_space = text_space()
        self.action_space = text_space()
        self._body_cache: dict[tuple, tuple[list, list]] = {}
        self._screen_cache: dict[tuple, Screen] = {}
        self._task: Task | None = None
        self._task_index = -1
        self._view = ViewState("home")
        self._history: list[ViewState] = []
        self._done = 0
        self._steps = 0
        self._screen = Screen([], "", (), ())

    @property
    def data_files(self) -> tuple[Path, ...]:
        """The data files this env loaded: the WikiHow bundle (tasks, titles and real article facts)."""
        return (bundle_path(),)

    # ------------------------------------------------------------------ API
    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        """Apply one ``CLICK``/``INPUT``/``SCROLL``/``GOBACK`` action; never raises."""
        if self._task is None:
            return self._screen.obs, 0.0, False, False, self._info("call reset() before step()")
        self._steps += 1
        error, events = self._apply(action)
        reward = 0.0
        if not error:
            while self._done < len(self._task.subgoals) and self._satisfied(self._task.subgoals[self._done], events):
                self._done += 1
                reward += 1.0
            self._render_view()
        terminated = self._done >= len(self._task.subgoals)
        truncated = not terminated and self.max_steps is not None and self._steps >= self.max_steps
        return self._screen.obs, reward, terminated, truncated, self._info(error)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        options = options or {}
        check_option_keys(options, ("task_index", "task_id"), "WikiHow")
        if "task_id" in options:
            key = options["task_id"]
            matches = [i for i, t in enumerate(self.tasks) if key in (t.task_id, t.file_stem)]
            if not matches:
                raise ValueError(
                    f"task_id {key!r} is not in this task set ({self.num_tasks} tasks); check env.unwrapped.tasks"
                )
            index = matches[0]
        elif "task_index" in options:
            index = int_option(options["task_index"], "task_index", self.num_tasks)
        else:
            index = int(self.np_random.integers(self.num_tasks))
        self._task_index = index
        self._task = self.tasks[index]
        self._view = ViewState("home", key=self._task.task_id)
        self._history = []
        self._done = 0
        self._steps = 0
        self._render_view()
        return self._screen.obs, self._info("")

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._screen.obs
        return None

    # -------------------------------------------------------------- helpers
    def _featured(self) -> list[str]:
        targets = {g.target.lower() for g in self._task.subgoals if g.target}
        titles = self.site.all_titles
        out: list[str] = []
        k = 0
        while len(out) < 3:
            t = titles[stable_int("featured", self._task.task_id, str(k)) % len(titles)]
            k += 1
            if t.lower() not in targets and t not in out:
                out.append(t)
        return out

    def _body(self, v: ViewState) -> tuple[list[screens.Element], list[screens.Element]]:
        key = (v.page, v.key, v.crumb if v.page == "article" else 0)
        hit = self._body_cache.get(key)
        if hit is not None:
            return hit
        site = self.site
        if v.page == "home":
            built = screens.home_body(self._featured())
        elif v.page == "search":
            results = self._search.search(v.key, k=screens.RESULTS_PER_SEARCH) if v.key else []
            built = screens.search_body(site, v.key, results)
        elif v.page == "article":
            built = screens.article_body(site.article(v.key), v.crumb)
        elif v.page == "reference":
            built = screens.reference_body(site.article(v.key))
        elif v.page == "author":
            built = screens.author_body(site, v.key, self._editorial)
        elif v.page == "category":
            built = screens.category_body(site, v.key)
        else:
            built = screens.about_body(site)
        if len(self._body_cache) > 256:
            self._body_cache.clear()
        self._body_cache[key] = built
        return built

    def _render_view(self) -> None:
        v = self._view
        key = (v.page, v.key, v.crumb, v.scroll)
        screen = self._screen_cache.get(key)
        if screen is None:
            header, body = self._body(v)
            window = screens.WINDOW[v.page]
            elements = header + body[v.scroll : v.scroll + window] + [screens.STATUS_BAR]
            screen = Screen(
                elements,
                sanitize("\n".join(screens.render_element(i, e) for i, e in enumerate(elements))),
                tuple(i for i, e in enumerate(elements) if e.clickable),
                tuple(i for i, e in enumerate(elements) if e.is_input),
            )
            if len(self._screen_cache) > 1024:
                self._screen_cache.clear()
            self._screen_cache[key] = screen
        self._screen = screen

    def _info(self, error: str) -> dict:
        task = self._task
        return {
            "task_lines": list(task.lines) if task else [],
            "instruction": task.instruction_after(self._done) if task else "",
            "subgoals_total": len(task.subgoals) if task else 0,
            "subgoals_done": self._done,
            "page": self._view.page,
            "task_id": task.task_id if task else "",
            "task_index": self._task_index,
            "clickable_ids": list(self._screen.clickable_ids),
            "input_ids": list(self._screen.input_ids),
            "last_action_error": error,
        }

    def _go(self, view: ViewState) -> None:
        self._history.append(self._view)
        if len(self._history) > 200:
            del self._history[0]
        self._view = view

    def _element(self, index: int) -> tuple[screens.Element | None, str]:
        elements = self._screen.elements
        if not 0 <= index < len(elements):
            return None, f"no element with id {index} on the screen (ids 0..{len(elements) - 1})"
        return elements[index], ""

    def _apply(self, action: str) -> tuple[str, list[tuple[str, str]]]:
        """Carry out ``action``; returns (error, events). On error nothing changes."""
        verb, arg, error = parse_action(action)
        if error:
            return error, []
        if verb == "CLICK":
            el, error = self._element(arg)
            if error:
                return error, []
            if not el.clickable:
                return f"element {arg} is not clickable", []
            self._tap(el)
            return "", []
        if verb == "INPUT":
            index, text = arg
            el, error = self._element(index)
            if error:
                return error, []
            if not el.is_input:
                return f"element {index} is not a text input; INPUT needs an input or a search button", []
            query = " ".join(text.split())[:_MAX_QUERY]
            if not query:
                return "INPUT needs non-empty text", []
            self._go(ViewState("search", key=query))
            return "", [("search", query)]
        if verb == "SCROLL":
            v = self._view
            if arg in ("UP", "DOWN"):
                _header, body = self._body(v)
                window = screens.WINDOW[v.page]
                last = max(0, len(body) - window)
                delta = max(1, window - screens.OVERLAP)
                pos = min(last, v.scroll + delta) if arg == "DOWN" else max(0, v.scroll - delta)
                self._view = ViewState(v.page, v.key, pos, v.crumb)
            elif v.page == "article":
                depth = len(self.site.article(v.key).chain) - 2
                crumb = min(max(0, depth), v.crumb + 1) if arg == "LEFT" else max(0, v.crumb - 1)
                self._view = ViewState(v.page, v.key, v.scroll, crumb)
            return "", []
        # GOBACK
        if not self._history:
            return "GOBACK: already on the first screen", []
        self._view = self._history.pop()
        return "", []

    def _tap(self, el: screens.Element) -> None:
        """Follow a tapped element's target: open the page it names ("noop" and unknown kinds do nothing)."""
        kind, *arg = el.target or ("noop",)
        key = arg[0] if arg else ""
        if kind in ("category", "parent"):  # "<" on a top-level category, or an unknown name: home
            kind = "category" if key and self.site.category(key) is not None else "home"
        if kind == "home":
            self._go(ViewState("home", key=self._task.task_id))
        elif kind in ("search_open", "clear"):
            self._go(ViewState("search"))
        elif kind in ("article", "reference", "author", "category", "about"):
            self._go(ViewState(kind, key=key))

    def _satisfied(self, goal: SubGoal, events: list[tuple[str, str]]) -> bool:
        v = self._view
        if goal.kind == "search":
            return any(kind == "search" and self._task.keyword_rx.search(q) for kind, q in events)
        if goal.kind == "about":
            return v.page == "about"
        if goal.kind in ("article", "author", "category", "reference"):
            return v.page == goal.kind and v.key.lower() == goal.target.lower()
        return False

    def close(self) -> None:
        self._body_cache.clear()
        self._screen_cache.clear()
