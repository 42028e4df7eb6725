"""WebShop as a Gymnasium text environment: find and buy the product an instruction asks for."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from rlem_gym.envs.common import check_option_keys, int_option
from rlem_gym.envs.webshop import pages
from rlem_gym.envs.webshop.catalog import get_catalog
from rlem_gym.envs.webshop.goals import GOAL_KINDS, get_goals, resolve_split
from rlem_gym.envs.webshop.pages import BUTTON, LINK, LINK_VISITED, OPTION, OPTION_CHOSEN, TEXT
from rlem_gym.envs.webshop.reward import OPTION_MATCHING, get_reward, load_nlp
from rlem_gym.envs.webshop.search import TOP_K, get_index
from rlem_gym.spaces import sanitize, text_space

RESULTS_PER_PAGE = 10
DEFAULT_MAX_STEPS = 15
SUB_PAGES = ("description", "features", "reviews")
ENV_PAGES = ("search", "results", "item", *SUB_PAGES, "done")

_ACTION = re.compile(r"\s*(search|click)\s*\[(.*)\]\s*", re.S | re.I)
_MAX_SHOWN_ARG = 60


def clickable_key(text: str) -> str:
    """The form a clickable is listed and matched in: whitespace runs (incl. U+00A0) as one space, lower-case."""
    return " ".join(text.split()).lower()


def parse_action(action: Any) -> tuple[str, str] | str:
    """``(verb, argument)`` of a ``search[...]``/``click[...]`` action, or an error.

    The argument of ``search`` is stripped and lower-cased; that of ``click`` is a :func:`clickable_key`.
    """
    if not isinstance(action, str):
        return f"action must be a str like click[buy now], got {type(action).__name__}"
    m = _ACTION.fullmatch(action)
    if m is None:
        return f"cannot parse {_short(action.strip())!r}: expected search[<keywords>] or click[<button>]"
    verb = m.group(1).lower()
    if verb == "click":
        return verb, clickable_key(m.group(2))
    return verb, m.group(2).strip().lower()


def _short(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN_ARG else text[:_MAX_SHOWN_ARG] + "..."


class WebShopEnv(gym.Env[str, str]):
    """Shop in a 1,000-product (or full 1.18M-product) catalog for the product an instruction describes.

    ## Description
    WebShop (Yao et al., 2022) as a pure-Python text environment: a search page, BM25 search results
    (top 50, 10 per page), product pages with options, and description/features/reviews sub-pages.
    An episode is one goal: the instruction names a product type, attributes, option values and a
    price limit; buying scores how well the bought product fits. No Flask, Java or downloads.

    ## Action Space
    ``Text`` over :data:`rlem_gym.spaces.CHARSET`. The grammar is ``search[<keywords>]`` (on the search
    page only) or ``click[<clickable>]`` with a lower-case entry of
    ``info["available_actions"]["clickables"]``: ``back to search``, ``next >``, ``< prev``, a product
    ASIN (``click[b07xyz1234]``), an option value, ``description``, ``features``, ``reviews``,
    ``buy now``. Verb and argument are case-insensitive, and a run of whitespace in a click argument
    (a non-breaking space included) counts as one space: option values are listed that way, while the
    observation shows them as the catalog has them. Any other string is an invalid action: the
    state does not change, the reward is 0 and ``info["last_action_error"]`` says why. ``step`` never
    raises.

    ## Observation Space
    ``Text`` over the same charset: the page as text (see :mod:`rlem_gym.envs.webshop.pages`).
    ``"text"``: visible texts joined by `` [SEP] `` (``WebShop [SEP] Instruction: [SEP] <instruction>
    [SEP] Search`` on the first page). ``"text_rich"``: one element per line with ``[button] X
    [button_]`` markers. ``shown_results=3`` lists only the first 3 products of each results page (the
    ReAct/Rememberer view; the other 7 are then not clickable).

    ## Starting State
    The search page of a goal: ``options={"task_index": i}`` picks position ``i`` of the split,
    ``options={"goal_index": g}`` picks global goal ``g`` (index after WebShop's seed-233 shuffle),
    otherwise a split position is drawn uniformly with ``self.np_random``.

    ## Rewards
    0 on every step except ``click[buy now]``, which gives WebShop's reward in [0, 1]
    (:func:`rlem_gym.envs.webshop.reward.get_reward`): (matched attributes + matched options + price
    within limit) / (#attributes + #options + 1) x the product-type factor. 1.0 = success.

    ## Episode End
    Termination: ``click[buy now]``. Truncation: after ``max_steps`` steps (valid or not) without a
    purchase, ``truncated=True`` with reward 0. The registered id also has Gymnasium's TimeLimit
    (``max_episode_steps=15``); to change the limit pass both, e.g.
    ``gym.make(id, max_steps=30, max_episode_steps=30)``.

    ## Information
    ``instruction`` (str), ``page`` (search | results | item | description | features | reviews |
    done), ``goal_index`` (int), ``task_index`` (int; -1 when a ``goal_index`` outside the split was
    asked for), ``available_actions`` (``{"has_search_bar": bool, "clickables": [str, ...]}``),
    ``last_action_error`` ("" when the action was valid), ``steps`` (int), ``asin`` (the open product
    or None), ``options`` (chosen {name: value}); after buying also ``reward_details`` (the reward's
    components: r_type, r_att, w_att, query_match, category_match, title_score, r_option, w_option,
    r_price, w_price) and ``purchased`` (asin, options, price).

    ## Arguments
    ``gym.make("rlem_gym/WebShop-v0", observation_mode="text_rich", goals="synthetic", split="test",
    shown_results=3)``

    - ``observation_mode``: "text" (default) or "text_rich".
    - ``goals``: "synthetic" (default; generated from the catalog's instructions) or "human" (needs
      an ``items_human_ins*.json``; the shipped catalog has 13 human goals).
    - ``split``: "all" (default), "test", "train" (synthetic goals), "paper_test", "paper_train_S0",
      "paper_train_S1" (human goals on the full data), or a list of global goal indices; see
      :mod:`rlem_gym.envs.webshop.goals`.
    - ``max_steps``: steps before truncation (default 15).
    - ``shown_results``: products shown per results page, None = all 10.
    - ``data_dir``: a folder with ``items_shuffle*.json[.gz]``, ``items_ins_v2*.json[.gz]`` and
      optionally ``items_human_ins*.json[.gz]``; default: the shipped 1,000-product catalog.
    - ``render_mode``: None or "ansi" (``render()`` returns the observation text).
    - ``option_matching``: "pairs" (default; the original's scoring of synthetic goals' options as
      (name, value) pairs) or "values" (bare values); see :mod:`rlem_gym.envs.webshop.reward`.
    - ``num_products``: use only the first N products of the catalog file (default: all).

    ## References
    Yao, Chen, Yang, Narasimhan. "WebShop: Towards Scalable Real-World Web Interaction with Grounded
    Language Agents", NeurIPS 2022; github.com/princeton-nlp/WebShop (MIT). Zhang et al., "Large
    Language Models Are Semi-Parametric Reinforcement Learning Agents" (Rememberer), NeurIPS 2023.

    ## Version History
    - v0: first version (bm25s search, spaCy 3.8 title tagging, seeded prices).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        observation_mode: str = "text",
        goals: str = "synthetic",
        split: str | Sequence[int] | None = "all",
        max_steps: int = DEFAULT_MAX_STEPS,
        shown_results: int | None = None,
        data_dir: str | os.PathLike | None = None,
        render_mode: str | None = None,
        option_matching: str = "pairs",
        num_products: int | None = None,
    ) -> None:
        if observation_mode not in pages.OBSERVATION_MODES:
            raise ValueError(f"observation_mode must be one of {pages.OBSERVATION_MODES}, got {observation_mode!r}")
        if goals not in GOAL_KINDS:
            raise ValueError(f"goals must be one of {GOAL_KINDS}, got {goals!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if option_matching not in OPTION_MATCHING:
            raise ValueError(f"option_matching must be one of {OPTION_MATCHING}, got {option_matching!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        if shown_results is not None and (
            not isinstance(shown_results, int) or not 1 <= shown_results <= RESULTS_PER_PAGE
        ):
            raise ValueError(f"shown_results must be None or an int in 1..{RESULTS_PER_PAGE}, got {shown_results!r}")
        self.observation_mode = observation_mode
        self.goal_kind = goals
        self.max_steps = max_steps
        self.shown_results = shown_results
        self.render_mode = render_mode
        self.option_matching = option_matching
        self.observation_space = text_space()
        self.action_space = text_space()

        self.catalog = get_catalog(data_dir, num_products)
        self.goals = get_goals(self.catalog, goals)
        if not self.goals:
            raise ValueError(
                f"the catalog in {self.catalog.files.products.parent} has no {goals} goals; use goals='synthetic' or add items_human_ins.json"
            )
        self.split = resolve_split(self.goals, goals, split)
        self._task_of_goal = {g: t for t, g in reversed(list(enumerate(self.split)))}
        self.search_index = get_index(self.catalog)
        load_nlp()  # the type reward's tagger: now, so that no step() pays for it or raises without a model

        self._goal: dict[str, Any] | None = None
        self._goal_index = -1
        self._task_index = -1
        self._page = "search"
        self._results: list[int] = []
        self._results_page = 1
        self._asin: str | None = None
        self._options: dict[str, str] = {}
        self._visited: set[str] = set()
        self._steps = 0
        #: set by click[buy now]: (reward, reward details, purchased {asin, options, price})
        self._purchase: tuple[float, dict[str, Any], dict[str, Any]] | None = None
        self._clickables: dict[str, tuple] = {}
        self._obs = ""

    @property
    def num_tasks(self) -> int:
        """Number of goals in the selected split."""
        return len(self.split)

    @property
    def goal(self) -> dict[str, Any] | None:
        """The current goal dict (None before the first reset)."""
        return self._goal

    @property
    def data_files(self) -> tuple[Path, ...]:
        """The data files this env loaded: products, attributes/synthetic instructions and human instructions if any."""
        files = self.catalog.files
        return tuple(p for p in (files.products, files.attributes, files.human) if p is not None)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply one ``search[...]``/``click[...]`` action; never raises."""
        if self._goal is None:
            return self._obs, 0.0, False, False, self._info("call reset() before step()")
        if self._page == "done":
            return self._obs, 0.0, True, False, self._info("the episode has ended with a purchase; call reset()")
        self._steps += 1
        error = self._apply(action)
        terminated = self._page == "done"
        truncated = not terminated and self._steps >= self.max_steps
        info = self._info(error)
        reward = 0.0
        if terminated:
            reward, info["reward_details"], info["purchased"] = self._purchase
        return self._obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode on a goal (``options``: ``task_index`` or ``goal_index``; else drawn)."""
        super().reset(seed=seed)
        options = options or {}
        check_option_keys(options, ("task_index", "goal_index"), "WebShop")
        if options.get("goal_index") is not None:
            goal_index = int_option(options["goal_index"], "goal_index", len(self.goals))
            task_index = self._task_of_goal.get(goal_index, -1)
        else:
            if options.get("task_index") is not None:
                task_index = int_option(options["task_index"], "task_index", self.num_tasks)
            else:
                task_index = int(self.np_random.integers(self.num_tasks))
            goal_index = self.split[task_index]
        self._goal, self._goal_index, self._task_index = self.goals[goal_index], goal_index, task_index
        self._steps = 0
        self._purchase = None
        self._visited = set()
        self._go_search_page()
        return self._obs, self._info("")

    def render(self) -> str | None:
        """The current observation text when ``render_mode="ansi"``."""
        if self.render_mode == "ansi":
            return self._obs
        return None

    # ------------------------------------------------------------------------- transitions

    def _apply(self, action: Any) -> str:
        parsed = parse_action(action)
        if isinstance(parsed, str):
            return parsed
        verb, arg = parsed
        if verb == "search":
            if self._page != "search":
                return f"search[...] works only on the search page (this is the {self._page} page); click[back to search] first"
            if not arg:
                return "search[] needs keywords, e.g. search[red cotton t-shirt]"
            self._results = self.search_index.search(arg, TOP_K)
            self._go_results(1)
            return ""
        target = self._clickables.get(arg)
        if target is None:
            names = ", ".join(list(self._clickables)[:12]) or "none (use search[...])"
            return f"no clickable {_short(arg)!r} on the {self._page} page; clickables: {names}"
        kind = target[0]
        if kind == "back":
            self._go_search_page()
        elif kind == "page":
            self._go_results(target[1])
        elif kind == "product":
            self._asin = target[1]
            self._visited.add(self._asin)
            self._go_item()
        elif kind == "option":
            self._options[target[1]] = target[2]
            self._go_item()
        elif kind == "sub":
            self._page = target[1]
            self._render()
        elif kind == "item":
            self._go_item()
        elif kind == "buy":
            self._buy()
        return ""

    def _go_search_page(self) -> None:
        self._page = "search"
        self._results = []
        self._results_page = 1
        self._asin = None
        self._options = {}
        self._render()

    def _go_results(self, page_number: int) -> None:
        self._page = "results"
        self._results_page = page_number
        self._asin = None
        self._options = {}
        self._render()

    def _go_item(self) -> None:
        self._page = "item"
        self._render()

    def _buy(self) -> None:
        product = self.catalog.by_asin[self._asin]
        price = self.catalog.prices[self._asin]
        total, details = get_reward(
            product, self._goal, price, self._options, verbose=True, option_matching=self.option_matching
        )
        self._purchase = (total, details, {"asin": self._asin, "options": dict(self._options), "price": price})
        self._page = "done"
        self._render()

    # ------------------------------------------------------------------------- rendering

    def _render(self) -> None:
        goal = self._goal
        elements: list[pages.Element] = [(TEXT, "WebShop"), (TEXT, "Instruction:"), (TEXT, goal["instruction_text"])]
        clickables: dict[str, tuple] = {}
        page = self._page
        if page == "search":
            elements.append((BUTTON, "Search"))
        elif page == "results":
            total = len(self._results)
            n = self._results_page
            elements += [(BUTTON, "Back to Search"), (TEXT, f"Page {n} (Total results: {total})")]
            clickables["back to search"] = ("back",)
            if n > 1:
                elements.append((BUTTON, "< Prev"))
                clickables["< prev"] = ("page", n - 1)
            if n * RESULTS_PER_PAGE < total:
                elements.append((BUTTON, "Next >"))
                clickables["next >"] = ("page", n + 1)
            shown = self._results[(n - 1) * RESULTS_PER_PAGE : n * RESULTS_PER_PAGE]
            if self.shown_results is not None:
                shown = shown[: self.shown_results]
            for pos in shown:
                product = self.catalog.products[pos]
                asin = product["asin"]
                elements += [
                    (LINK_VISITED if asin in self._visited else LINK, asin),
                    (TEXT, product["Title"]),
                    (TEXT, product["Price"]),
                ]
                clickables[asin.lower()] = ("product", asin)
        elif page == "done":
            elements += [
                (TEXT, pages.DONE_TITLE),
                (TEXT, "Purchased"),
                (TEXT, self._asin),
                (TEXT, "Your score (min 0.0, max 1.0)"),
                (TEXT, f"{self._purchase[0]:.4f}"),
            ]
        else:
            product = self.catalog.by_asin[self._asin]
            elements += [(BUTTON, "Back to Search"), (BUTTON, "< Prev")]
            clickables["back to search"] = ("back",)
            if page == "item":
                clickables["< prev"] = ("page", self._results_page)
                chosen = set(self._options.values())
                option_clicks = {}
                for name, values in product["options"].items():
                    elements.append((TEXT, name))
                    for value in values:
                        elements.append((OPTION_CHOSEN if value in chosen else OPTION, value))
                        option_clicks[clickable_key(value)] = ("option", name, value)
                elements += [
                    (TEXT, product["Title"]),
                    (TEXT, f"Price: {product['Price']}"),
                    (TEXT, f"Rating: {product['Rating']}"),
                    (BUTTON, "Description"),
                    (BUTTON, "Features"),
                    (BUTTON, "Reviews"),
                    (BUTTON, "Buy Now"),
                ]
                clickables.update({s: ("sub", s) for s in SUB_PAGES})
                clickables["buy now"] = ("buy",)
                clickables.update(option_clicks)  # as in the original, option inputs win over same-named buttons
            else:
                clickables["< prev"] = ("item",)
                if page == "description":
                    elements.append((TEXT, product["Description"]))
                elif page == "features":
                    elements += [(TEXT, b) for b in product["BulletPoints"]]
                else:
                    for review in product["Reviews"]:
                        fields = review.values() if isinstance(review, dict) else [review]
                        elements += [(TEXT, str(f)) for f in fields]
        self._clickables = clickables
        self._obs = sanitize(pages.render(elements, self.observation_mode))

    def _info(self, error: str) -> dict[str, Any]:
        goal = self._goal
        return {
            "instruction": goal["instruction_text"] if goal else "",
            "page": self._page,
            "goal_index": self._goal_index,
            "task_index": self._task_index,
            "available_actions": {
                "has_search_bar": self._page == "search" and goal is not None,
                "clickables": list(self._clickables),
            },
            "last_action_error": error,
            "steps": self._steps,
            "asin": self._asin,
            "options": dict(self._options),
        }

    def close(self) -> None:
        """Nothing to release: the catalog, goals, search index and tagger are shared per process; idempotent."""
