"""WebShop goals (shopping instructions) and the named splits that select among them.

A goal is what the agent is asked to buy: a dict with ``asin, category, query, name,
product_category, instruction_text, attributes, price_upper, goal_options, weight``.

- Synthetic goals: one per combination of option values of every product that has a synthetic
  instruction; text = ``instruction + " with name: value, and name: value" + price clause``;
  ``goal_options`` is a dict {name: value}.
- Human goals: one per human instruction with at least one instruction attribute; text =
  ``instruction.strip('.') + price clause``; ``goal_options`` is the list of human-given values.
- Price clause (per product for synthetic goals, per instruction for human ones): of the grid
  10, 20, ..., 990 keep the values above the product's price, take the first 4; with >= 2 left,
  sample 2 and take the larger as ``price_upper`` and append ``, and price lower than X.XX dollars``;
  else ``price_upper = 1000000`` and no clause. The draws continue the catalog's
  ``random.Random(233)`` stream (after its price draws), so they are the same in every process.
- Order: the list is shuffled by ``random.Random(233).shuffle``, exactly as WebShop's
  ``random.seed(233); random.shuffle(goals)``; "goal i" is index i after it. Given the same goal list
  (same catalog and files) the order is the original's.

Named splits (global goal indices after the shuffle):

- synthetic goals on any catalog: ``all``; ``test`` = goals [0, 100); ``train`` = the first 200
  goals at index >= 100 whose product is in no test goal (so no product is in both). On the shipped
  1,000-product catalog: 6,910 goals; test = 100 goals of 56 products, train = 200 goals of 110 other products.
- human goals: ``all``; the Rememberer paper's ``paper_test`` = [0, 100), ``paper_train_S0`` =
  [500, 510), ``paper_train_S1`` = [510, 520). The paper splits need WebShop's full
  ``items_shuffle.json`` + ``items_ins_v2.json`` + ``items_human_ins.json`` in ``data_dir``.
- an explicit list of global goal indices.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rlem_gym.envs.webshop.catalog import Catalog

PRICE_GRID = tuple(10.0 * i for i in range(1, 100))
NO_PRICE_LIMIT = 1_000_000
SHUFFLE_SEED = 233
GOAL_KINDS = ("synthetic", "human")
TEST_SIZE = 100
TRAIN_SIZE = 200
#: human-goal paper splits: name -> (start, stop) global indices.
PAPER_SPLITS = {"paper_test": (0, 100), "paper_train_S0": (500, 510), "paper_train_S1": (510, 520)}
SYNTHETIC_SPLITS = ("all", "train", "test")
HUMAN_SPLITS = ("all", *PAPER_SPLITS)


def price_clause(price: float, rng: random.Random) -> tuple[float, str]:
    """(price_upper, text) of a goal whose product costs ``price``; consumes ``rng`` as the original."""
    grid = [p for p in PRICE_GRID if p > price][:4]
    if len(grid) >= 2:
        _, upper = sorted(rng.sample(grid, 2))
        return upper, f", and price lower than {upper:.2f} dollars"
    return NO_PRICE_LIMIT, ""


def synthetic_goals(catalog: Catalog, rng: random.Random) -> list[dict[str, Any]]:
    """Every synthetic goal of the catalog, in catalog order (before the shuffle)."""
    goals: list[dict[str, Any]] = []
    attr_counts: dict[str, int] = defaultdict(int)
    for product in catalog.products:
        if not product.get("instruction_text") or not product.get("instruction_attributes"):
            continue
        attributes = list(product["instruction_attributes"])
        upper, clause = price_clause(catalog.prices[product["asin"]], rng)
        names = sorted(product["options"])
        for combination in itertools.product(*(product["options"][n] for n in names)):
            goal_options = dict(zip(names, combination))
            option_text = ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
            option_text = f" with {option_text}" if option_text else ""
            goals.append(
                {
                    "asin": product["asin"],
                    "category": product["category"],
                    "query": product["query"],
                    "name": product["Title"],
                    "product_category": product["product_category"],
                    "instruction_text": f"{product['instruction_text']}{option_text}{clause}",
                    "attributes": attributes,
                    "price_upper": upper,
                    "goal_options": goal_options,
                }
            )
            for a in attributes:
                attr_counts[a] += 1
    for goal in goals:
        goal["weight"] = sum(1.0 / attr_counts[a] for a in goal["attributes"]) / len(goal["attributes"])
    return goals


def human_goals(catalog: Catalog, rng: random.Random) -> list[dict[str, Any]]:
    """Every human goal of the catalog (instructions with >= 1 attribute), in catalog order."""
    goals: list[dict[str, Any]] = []
    for product in catalog.products:
        for record in product.get("instructions") or ():
            attributes = record.get("instruction_attributes") or []
            if not attributes:
                continue
            upper, clause = price_clause(catalog.prices[product["asin"]], rng)
            goals.append(
                {
                    "asin": product["asin"],
                    "category": product["category"],
                    "query": product["query"],
                    "name": product["name"],
                    "product_category": product["product_category"],
                    "instruction_text": str(record.get("instruction", "")).strip(".") + clause,
                    "attributes": list(attributes),
                    "price_upper": upper,
                    "goal_options": list(record.get("instruction_options") or []),
                    "weight": 1,
                }
            )
    return goals


def get_goals(catalog: Catalog, kind: str = "synthetic") -> list[dict[str, Any]]:
    """The shuffled goal list of ``kind`` ("synthetic" | "human") for a catalog; built once, kept on the catalog."""
    if kind not in GOAL_KINDS:
        raise ValueError(f"goals must be one of {GOAL_KINDS}, got {kind!r}")
    if kind not in catalog.goal_lists:
        rng = random.Random()
        rng.setstate(catalog.rng_state)
        goals = synthetic_goals(catalog, rng) if kind == "synthetic" else human_goals(catalog, rng)
        random.Random(SHUFFLE_SEED).shuffle(goals)
        catalog.goal_lists[kind] = goals
    return catalog.goal_lists[kind]


def _synthetic_train(goals: Sequence[dict[str, Any]]) -> list[int]:
    test_asins = {g["asin"] for g in goals[:TEST_SIZE]}
    return [i for i in range(TEST_SIZE, len(goals)) if goals[i]["asin"] not in test_asins][:TRAIN_SIZE]


def resolve_split(goals: Sequence[dict[str, Any]], kind: str, split: str | Sequence[int] | None) -> list[int]:
    """Global goal indices of a named split or an explicit index list (see the module docstring)."""
    n = len(goals)
    if split is None or (isinstance(split, str) and split == "all"):
        return list(range(n))
    if isinstance(split, str):
        if kind == "synthetic":
            if split == "test":
                return list(range(min(TEST_SIZE, n)))
            if split == "train":
                return _synthetic_train(goals)
            if split in PAPER_SPLITS:
                raise ValueError(
                    f"split {split!r} is defined on human goals; pass goals='human' with WebShop's full data in data_dir"
                )
            raise ValueError(
                f"unknown split {split!r} for synthetic goals; use one of {SYNTHETIC_SPLITS} or a list of goal indices"
            )
        if split in PAPER_SPLITS:
            start, stop = PAPER_SPLITS[split]
            if n < stop:
                raise ValueError(
                    f"split {split!r} needs >= {stop} human goals but this catalog has {n}; point data_dir at WebShop's full "
                    "items_shuffle.json + items_ins_v2.json + items_human_ins.json"
                )
            return list(range(start, stop))
        raise ValueError(
            f"unknown split {split!r} for human goals; use one of {HUMAN_SPLITS} or a list of goal indices"
        )
    try:
        indices = [int(i) for i in split]
    except (TypeError, ValueError):
        raise ValueError(f"split must be a split name or a list of goal indices, got {split!r}") from None
    if not indices:
        raise ValueError("split is an empty list; give at least one goal index")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"goal indices {bad[:5]} are out of range: there are {n} {kind} goals (0..{n - 1})")
    return indices
