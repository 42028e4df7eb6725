"""The ``oracle`` reference agent: a policy that knows the goal, no LLM, no memory (the table's ceiling).

WebShop: it looks up the episode's goal (``info["goal_index"]`` in the same goal list the env
uses, so it must be built with the env's ``data_dir`` / ``goals`` / ``num_products``), then

1. searches the goal product's own title;
2. clicks the goal's ASIN on the results page, paging on with ``next >`` (at most 5 pages) when
   it is not shown; if the product never shows up it opens the first result instead;
3. clicks each of the goal's option values the product page offers (synthetic goals: the
   ``{name: value}`` pairs; human goals: the listed values that are option buttons as written);
4. ``click[buy now]``.

The reward is then WebShop's maximum for the goal: 1.0 for synthetic goals, whose options and
attributes are the product's own; a human goal's reward can stay below 1.0 when its written
option values are not the product's option buttons or its attributes are not found in the
product's text.

WikiHow: the env's scripted :class:`~rlem_gym.envs.wikihow.oracle.WikiHowOracle`, which reads the
task lines, ``info["subgoals_done"]`` and the screen and solves every canonical task at full reward.

TextWorld: the game's own walkthrough, which TextWorld's generator stores in the game's ``.json``
file (``info["game_path"]``), played command by command.
"""

from __future__ import annotations

import os
from typing import Any

from rlem_gym.agents.scripted import ScriptedAgent

#: results pages the WebShop oracle looks through before giving up on the goal's product
MAX_RESULT_PAGES = 5
_NAVIGATION = frozenset({"back to search", "next >", "< prev", "search"})


def _key(text: Any) -> str:
    """A clickable's matching form: whitespace runs as one space, lower-case (as the env lists them)."""
    return " ".join(str(text).split()).lower()


class WebShopGoalPolicy:
    """Buy the goal's own product with the goal's options (see the module docstring).

    Args:
        data_dir, goals, num_products: the env's catalog and goal kind, so that ``info["goal_index"]``
            means the same goal here as in the env.
    """

    def __init__(
        self, data_dir: str | os.PathLike | None = None, goals: str = "synthetic", num_products: int | None = None
    ) -> None:
        self.data_dir = data_dir
        self.goal_kind = goals
        self.num_products = num_products
        self._goals: list[dict[str, Any]] | None = None
        self.goal: dict[str, Any] | None = None
        self._pages = 0

    def _goal_list(self) -> list[dict[str, Any]]:
        if self._goals is None:
            from rlem_gym.envs.webshop.catalog import get_catalog
            from rlem_gym.envs.webshop.goals import get_goals

            self._goals = get_goals(get_catalog(self.data_dir, self.num_products), self.goal_kind)
        return self._goals

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        goals = self._goal_list()
        index = info.get("goal_index")
        if not isinstance(index, int) or not 0 <= index < len(goals):
            raise ValueError(f"the WebShop oracle needs info['goal_index'] in 0..{len(goals) - 1}, got {index!r}")
        goal = goals[index]
        if _key(goal["instruction_text"]) != _key(info.get("instruction", "")):
            raise ValueError(
                f"goal {index} of the oracle's catalog is not the env's goal: build the oracle with the env's "
                "data_dir, goals and num_products"
            )
        self.goal = goal
        self._pages = 0

    def wanted_options(self, chosen: dict[str, str], clickables: set[str]) -> list[str]:
        """The goal's option values still to click on this product page, as clickables."""
        options = self.goal["goal_options"] if self.goal else {}
        chosen_keys = {_key(v) for v in chosen.values()}
        if isinstance(options, dict):
            pairs = [(name, value) for name, value in options.items() if _key(chosen.get(name, "")) != _key(value)]
            return [_key(v) for _, v in pairs if _key(v) in clickables]
        return [_key(v) for v in options if _key(v) in clickables and _key(v) not in chosen_keys]

    def act(self, obs: str, info: dict[str, Any]) -> tuple[str, str]:
        if self.goal is None:
            raise RuntimeError("call reset() before act()")
        avail = info.get("available_actions") or {}
        clickables = [_key(c) for c in avail.get("clickables", ())]
        asin = self.goal["asin"].lower()
        if avail.get("has_search_bar"):
            return f"search[{' '.join(str(self.goal['name']).split())}]", "oracle: search the goal product's title"
        if "buy now" in clickables:
            todo = self.wanted_options(dict(info.get("options") or {}), set(clickables))
            if todo and str(info.get("asin") or "").lower() == asin:
                return f"click[{todo[0]}]", "oracle: choose the goal's option"
            return "click[buy now]", "oracle: buy"
        if asin in clickables:
            return f"click[{asin}]", "oracle: open the goal product"
        if "next >" in clickables and self._pages < MAX_RESULT_PAGES - 1:
            self._pages += 1
            return "click[next >]", "oracle: the goal product is not on this page"
        products = [c for c in clickables if c and c not in _NAVIGATION]
        if products:
            return f"click[{products[0]}]", "oracle: the goal product was not found; first result"
        if "< prev" in clickables:
            return "click[< prev]", "oracle: back to the product"
        return "click[back to search]", "oracle: start over"


class WikiHowOraclePolicy:
    """The env's scripted WikiHow oracle as a policy."""

    def __init__(self) -> None:
        from rlem_gym.envs.wikihow.oracle import WikiHowOracle

        self.oracle = WikiHowOracle()

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        self.oracle.reset()

    def act(self, obs: str, info: dict[str, Any]) -> tuple[str, str]:
        return self.oracle.act(obs, info), "oracle"


class TextWorldWalkthroughPolicy:
    """Play the game's walkthrough (the generator's solution, read from the game file's ``.json``)."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def reset(self, obs: str, info: dict[str, Any]) -> None:
        from rlem_gym.envs.textworld_env import game_walkthrough

        path = info.get("game_path")
        if not path:
            raise ValueError("the TextWorld oracle needs info['game_path'] (rlem_gym/TextWorld-v0 gives it)")
        self.commands = game_walkthrough(path)

    def act(self, obs: str, info: dict[str, Any]) -> tuple[str, str]:
        if self.commands:
            return self.commands.pop(0), "walkthrough"
        listed = info.get("admissible_commands") or ["look"]
        return str(listed[0]), "walkthrough done; first admissible command"


class OracleAgent(ScriptedAgent):
    """The goal-knowing policy of each env (see the module docstring); needs no LLM.

    WebShop keyword arguments ``data_dir``, ``goals``, ``num_products`` must match the env's.
    """

    name = "oracle"
    policies = {
        "webshop": {"goal": WebShopGoalPolicy},
        "wikihow": {"script": WikiHowOraclePolicy},
        "textworld": {"walkthrough": TextWorldWalkthroughPolicy},
    }

    @classmethod
    def run_settings(cls, cfg: Any, variant: Any) -> dict[str, Any]:
        """On WebShop, the env's ``data_dir`` / ``goals`` / ``num_products``, so that it knows the same goals."""
        if cfg.env != "webshop":
            return {}
        return {k: cfg.env_kwargs[k] for k in ("data_dir", "goals", "num_products") if k in cfg.env_kwargs}
