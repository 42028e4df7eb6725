"""The WebShop adapter: ``search[...]`` / ``click[...]`` grammar, page-type memory key, exemplars.

The default exemplars and the ReAct example trajectory are written over real products of the
shipped 1,000-product catalog, with the pages as ``rlem_gym/WebShop-v0`` shows them (the
``STATIC_EXEMPLARS`` and ``REACT_EXAMPLE`` constants at the end of this file).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rlem_gym.advice import AdviceLine
from rlem_gym.agents.adapters import EnvAdapter, choose
from rlem_gym.llm.constraint import ActionConstraint
from rlem_gym.prompts import (
    WEBSHOP_PREAMBLE,
    WEBSHOP_REACT_PREAMBLE,
    Exemplar,
    render_webshop_input,
)
from rlem_gym.trajectory import Situation

if TYPE_CHECKING:
    from rlem_gym.memory.embeddings import Embedder
    from rlem_gym.memory.similarity import Matcher

#: ``search[...]`` / ``click[...]``, tolerant to case, spaces before the bracket, a missing ``]``
_ACTION_RE = re.compile(r"\b(search|click)\s*\[([^\[\]\n]*)(?:\]|(?=\n)|$)", re.IGNORECASE)
#: navigation buttons, tried last by the fallback
_NAVIGATION = ("back to search", "< prev", "next >")
PRICE_CLAUSE_RE = re.compile(r",?\s*and price lower than [\d.,]+ dollars", re.IGNORECASE)
_REQUEST_RE = re.compile(
    r"^(?:i need|i want|i would like|i'd like|i'm looking for|i am looking for|find me|get me|buy me)\s+"
    r"(?:to (?:buy|get|find)\s+)?(?:an?|some|the)?\s*",
    re.IGNORECASE,
)
NOOP_ACTION = "click[]"


def _canonical(verb: str, arg: str) -> str | None:
    arg = " ".join(arg.replace("\t", " ").split())
    verb = verb.lower()
    if verb == "click":
        arg = arg.lower()
    if not arg:
        return None
    return f"{verb}[{arg}]"


def _clickables(info: dict[str, Any]) -> list[str]:
    """The page's clickable elements as actions name them (lower-case), blank ones left out."""
    avail = info.get("available_actions") or {}
    return [str(c).lower() for c in avail.get("clickables", ()) if str(c).strip()]


def search_keywords(instruction: str, max_words: int = 12) -> str:
    """Key words for a fallback search: the instruction without its price clause, cut short."""
    text = PRICE_CLAUSE_RE.sub("", instruction or "")
    text = re.sub(_REQUEST_RE, "", text.strip())
    words = re.findall(r"[\w'&.-]+", text.lower())
    return " ".join(words[:max_words]) or "product"


class WebShopAdapter(EnvAdapter):
    """WebShop: memory key = (instruction, page text, ""), valid actions from ``available_actions``."""

    name = "webshop"
    noop_action = NOOP_ACTION
    preamble = WEBSHOP_PREAMBLE
    react_preamble = WEBSHOP_REACT_PREAMBLE

    # -- prompt parts -----------------------------------------------------------------------------
    def render_input(self, inp: Situation) -> str:
        return render_webshop_input(inp)

    def memory_key(self, obs: str, info: dict[str, Any]) -> tuple[str, str, str]:
        return (str(info.get("instruction", "")), str(obs or ""), "")

    def available_actions(self, info: dict[str, Any]) -> tuple[str, ...]:
        avail = info.get("available_actions") or {}
        listed = ["search"] if avail.get("has_search_bar") else []
        return tuple(listed + _clickables(info))

    def react_example(self) -> str:
        return REACT_EXAMPLE

    def default_exemplars(self) -> list[Exemplar]:
        return list(STATIC_EXEMPLARS)

    # -- actions --------------------------------------------------------------------------------
    def extract_actions(self, text: str) -> list[str]:
        found = []
        for match in _ACTION_RE.finditer(text or ""):
            action = _canonical(match.group(1), match.group(2))
            if action:
                found.append(action)
        return found

    def is_valid_canonical(self, action: str, info: dict[str, Any]) -> bool:
        if action.startswith("search["):
            return bool((info.get("available_actions") or {}).get("has_search_bar"))
        return action[len("click[") : -1] in _clickables(info)

    def fallback_candidates(self, obs: str, info: dict[str, Any]) -> list[str]:
        avail = info.get("available_actions") or {}
        out = []
        if avail.get("has_search_bar"):
            out.append(f"search[{search_keywords(str(info.get('instruction', '')))}]")
        clickables = _clickables(info)
        out += [f"click[{c}]" for c in clickables if c not in _NAVIGATION and c != "search"]
        out += [f"click[{c}]" for c in clickables if c in _NAVIGATION]
        return out

    def action_constraint(self, info: dict[str, Any]) -> ActionConstraint:
        """``click[x]`` for each clickable x (canonical: lower-case, single spaces); ``search[...]`` with a search bar."""
        clicks = (_canonical("click", c) for c in _clickables(info))
        search = (("search[", "]"),) if (info.get("available_actions") or {}).get("has_search_bar") else ()
        return ActionConstraint.of((c for c in clicks if c), search, forbid="[")

    def random_action(self, observation: str, available: Sequence[str], rng: np.random.Generator) -> str | None:
        choices = [f"click[{a}]" for a in available if a and a != "search"]
        return choose(rng, choices) if choices else None

    # -- memory ---------------------------------------------------------------------------------
    def make_matcher(self, embedder: "Embedder | None" = None, lam: float = 0.5) -> "Matcher":
        """The paper's ``pgpat+insrel`` matcher: instruction embeddings + page-type equality."""
        from rlem_gym.envs.webshop import page_type
        from rlem_gym.memory.similarity import WebShopMatcher

        if embedder is None:
            from rlem_gym.memory.embeddings import default_embedder

            embedder = default_embedder()
        return WebShopMatcher(embedder, page_type, lam=lam)


# ------------------------------------------------------------------------- shipped examples
# Written over real products of the shipped 1,000-product catalog; every page below is exactly what
# ``gym.make("rlem_gym/WebShop-v0")`` shows (default "text" mode) for these goals and actions, which
# tests/test_agents_real.py checks. Both goals are in the synthetic "train" split, not in "test".

#: the ReAct example: goal 101 (binoculars, style 10x50 hd binoculars), bought with reward 1.0
REACT_GOAL_INDEX = 101
REACT_ACTIONS: tuple[str, ...] = (
    "search[binoculars for bird watching]",
    "click[b08yqkxlvg]",
    "click[10x50 hd binoculars]",
    "click[buy now]",
)
#: the static exemplars: goal 104 (a coffee brown women's sweater, size large)
STATIC_GOAL_INDEX = 104
STATIC_ACTIONS: tuple[str, ...] = (
    "search[women's long sleeve sweater]",
    "click[b09krlgsc5]",
    "click[coffee brown]",
    "click[large]",
    "click[buy now]",
)

#: the goal and page head of the static exemplars (a sweater)
_SWEATER_GOAL = (
    "Find me hand wash, machine wash women's sweaters with long sleeve, unique design with color: "
    "coffee brown, and size: large, and price lower than 60.00 dollars"
)
_SWEATER_PAGE = f"WebShop [SEP] Instruction: [SEP] {_SWEATER_GOAL} [SEP] "
_SWEATER_SEARCH = _SWEATER_PAGE + "Search"
_SWEATER_RESULTS = (
    _SWEATER_PAGE + "Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] B09KRLGSC5 [SEP] SweatyRocks "
    "Women's Oversized Sweater Crewneck Long Sleeve Knit Tops Pullover Jumper Tops [SEP] $25.99 "
    "[SEP] B09P5CRVQ6 [SEP] Womens Tops Casual, Sweatshirt for Women Graphic, Womens Sweatshirt "
    "Hoodie, Women Love Print Sweatshirt Long Sleeve Cute Heart Sweater Pullover Tops Blouse [SEP] "
    "$22.78 [SEP] B07DKGJR74 [SEP] Amazon Brand - Daily Ritual Women's 100% Cotton Oversized Fit "
    "V-Neck Pullover Sweater [SEP] $20.66 to $29.2 [SEP] B09J95S478 [SEP] My Sanity Question Giraffe "
    "Christmas Pattern Black Ugly Wool Christmas Sweater Pullover Long Sleeve Sweater for Men Women, "
    "Couple Matching, Friends [SEP] $39.99 [SEP] B09QGK5XHZ [SEP] WENKOMG1 Men's Long Sleeve "
    "Undershirt with Mask Turtleneck Hooded T-Shirt Solid Color Workout Tops Zipper Side Slit Shirts "
    "Slim Fit Sweatshirt Spring/Summer Tee Shirts(Gray,) [SEP] $8.39 [SEP] B09Q37JQZ6 [SEP] Women's "
    "Sexy Swimsuit One Piece High Neck Halter Bikini Floral Stiching See Through Monokini Tummy "
    "Control Beachwear [SEP] $10.99 to $18.99 [SEP] B09KP78G37 [SEP] Women Faux Fur Lined Jacket "
    "Coat Winter Warm Thick Fleece Outwear Trench Zipper Plus Size Long Sleeve Plush Overcoat [SEP] "
    "$47.41 to $59.07 [SEP] B09PVNLVRW [SEP] Women's V-Neck Rompers Printed Jumpsuit Long Sleeve "
    "Homewear Butt Flap Pajamas One-Piece Onesies Nightwear Sexy Bodysuit [SEP] $17.4 to $28.67 "
    "[SEP] B09NDS8F4V [SEP] AODONG Onesie Pajamas for Women Onesies Romper Pajamas Printed Bodycon "
    "Jumpsuit Shorts Sexy One Piece Pjs Overall [SEP] $2.99 to $7.99 [SEP] B09QT2369P [SEP] Stylish "
    "Women's Long Sleeve Sweatshirt Letters Printed Tops Casual Crewneck Solid Blouses Loose Fitting "
    "Soft Pullover [SEP] $11.99 to $14.99"
)
_SWEATER_ITEM = (
    _SWEATER_PAGE + "Back to Search [SEP] < Prev [SEP] size [SEP] x-small [SEP] small [SEP] medium [SEP] large [SEP] "
    "color [SEP] black [SEP] coffee brown [SEP] mocha brown [SEP] SweatyRocks Women's Oversized "
    "Sweater Crewneck Long Sleeve Knit Tops Pullover Jumper Tops [SEP] Price: $25.99 [SEP] Rating: "
    "N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"
)

STATIC_EXEMPLARS: tuple[Exemplar, ...] = (
    Exemplar(
        Situation(
            task=_SWEATER_GOAL,
            observation=_SWEATER_SEARCH,
            available_actions=("search",),
        ),
        encouraged=(AdviceLine(STATIC_ACTIONS[0], 1.0, "The key words name the product type and its main feature."),),
        discouraged=(AdviceLine("search[sweater]", 0.0, "These key words are too general."),),
    ),
    Exemplar(
        Situation(
            task=_SWEATER_GOAL,
            observation=_SWEATER_RESULTS,
            last_actions=STATIC_ACTIONS[:1],
            available_actions=(
                "back to search",
                "next >",
                "b09krlgsc5",
                "b09p5crvq6",
                "b07dkgjr74",
                "b09j95s478",
                "b09qgk5xhz",
                "b09q37jqz6",
                "b09kp78g37",
                "b09pvnlvrw",
                "b09nds8f4v",
                "b09qt2369p",
            ),
        ),
        encouraged=(
            AdviceLine(
                "click[b09krlgsc5]", 1.0, "b09krlgsc5 is a women's long sleeve sweater at $25.99, under 60 dollars."
            ),
        ),
        discouraged=(AdviceLine("click[b09qgk5xhz]", 0.0, "b09qgk5xhz is a men's undershirt, not the desired item."),),
    ),
    Exemplar(
        Situation(
            task=_SWEATER_GOAL,
            observation=_SWEATER_ITEM,
            last_actions=STATIC_ACTIONS[:2],
            available_actions=(
                "back to search",
                "< prev",
                "description",
                "features",
                "reviews",
                "buy now",
                "x-small",
                "small",
                "medium",
                "large",
                "black",
                "coffee brown",
                "mocha brown",
            ),
        ),
        encouraged=(
            AdviceLine("click[coffee brown]", 1.0, "The instruction asks for color coffee brown; then size large."),
        ),
        discouraged=(AdviceLine("click[buy now]", 0.0, "The color and size are not chosen yet."),),
    ),
)

#: the ReAct example's goal page head and the product page it shows twice (before and after the option click)
_BINOCULARS_PAGE = (
    "WebShop [SEP] Instruction: [SEP] Find me high power, non slip binoculars & scopes for bird "
    "watching with style: 10x50 hd binoculars, and price lower than 180.00 dollars [SEP] "
)
_BINOCULARS_ITEM = (
    _BINOCULARS_PAGE + "Back to Search [SEP] < Prev [SEP] style [SEP] 10x50 hd binoculars [SEP] 10x50 uhd binoculars "
    "[SEP] 15x60 hd binoculars [SEP] 15x60 uhd binoculars [SEP] 8x40 hd binoculars [SEP] 8x40 uhd "
    "binoculars [SEP] Staoptics 15x60 UHD Binoculars,High Power Astronomy Binoculars for Stargazing "
    "and Long Distance Bird Watching Hunting-Fully Multi-Broadband Coated Lenses View Clear and "
    "Bright,Adapt to Tripod Black [SEP] Price: $159.99 [SEP] Rating: N.A. [SEP] Description [SEP] "
    "Features [SEP] Reviews [SEP] Buy Now"
)
REACT_EXAMPLE = (
    _BINOCULARS_PAGE
    + "Search\nAction: think[I need high power binoculars for bird watching, style 10x50 hd binoculars, "
    "under 180 dollars. I search for binoculars for bird watching.]\nObservation: OK.\nAction: "
    "search[binoculars for bird watching]\nObservation:\n"
    + _BINOCULARS_PAGE
    + "Back to Search [SEP] Page 1 (Total results: 27) [SEP] Next > [SEP] B08YWKVNLT [SEP] 20x50 High "
    "Power Binoculars for Adults with Low Light Night Vision, Compact Waterproof Binoculars for Bird "
    "Watching Hunting Travel Football Games Stargazing with Carrying Case and Strap [SEP] $46.0 "
    "[SEP] B08YQKXLVG [SEP] Staoptics 15x60 UHD Binoculars,High Power Astronomy Binoculars for "
    "Stargazing and Long Distance Bird Watching Hunting-Fully Multi-Broadband Coated Lenses View "
    "Clear and Bright,Adapt to Tripod Black [SEP] $159.99 [SEP] B08YNRQSBL [SEP] FEEE-ZC 60X60 "
    "Telescopic Long Distance 3 Kilometers Binoculars Telescope Green Membrane Spy Spotting Scope "
    "Heavy Duty High Definition for Concert Hiking [SEP] $88.51 [SEP] B09R1T2P6V [SEP] Bling Charm "
    "Pendant Bracelet Band Compatible with Apple Watch Bands 38mm 40mm 42mm 44mm,Adjustable "
    "Stainless Steel Smartwatch Band with Bling Diamond Case for iwatch Series SE Series 7 6 5 4 3 2 "
    "1 [SEP] $13.99 to $16.99 [SEP] B09P1HJ32G [SEP] VDSOIUTYHFV Infrared Digital Night Vision "
    "Device, High-Definition Day and Night Dual-use, Outdoor Photos and Videos are All Black, for "
    "Adults Bird Watching, Traveling, Hiking [SEP] $840.99 [SEP] B00N6Y8ORI [SEP] Birds Eye "
    "Steamfresh Family Size Mixed Vegetables, Keto Friendly Frozen Vegetables, 19 OZ [SEP] $100.0 "
    "[SEP] B07GLPCY1C [SEP] Warmter 32.5 Inch Large Elegant Bird of Paradise Artificial Flower for "
    "Home Office 3 Pcs (Yellow) [SEP] $22.99 [SEP] B00QFWWZMI [SEP] VERDUGO GIFT 10016180 Free As A "
    "Bird Stool, Multicolor [SEP] $85.43 [SEP] B08TGMZX1F [SEP] Smart Watch for Women, RAIMI Fashion "
    "Fitness Watch with Heart Rate Blood Pressure Sleep Tracker Pedometer Multiple Sport Modes, "
    "Waterproof, Sport SmartWatch Sync with Google Fit, iOS & Android App [SEP] $59.99 [SEP] "
    "B01LZWDNX6 [SEP] VR Headset Homido V2 for iPhone and Android [SEP] $54.99\nAction: "
    "think[b08ywkvnlt comes only as 20x50. b08yqkxlvg is Staoptics high power binoculars for bird "
    "watching at $159.99, under 180 dollars, and may come in a 10x50 style. I check "
    "b08yqkxlvg.]\nObservation: OK.\nAction: click[b08yqkxlvg]\nObservation:\n"
    + _BINOCULARS_ITEM
    + "\nAction: think[The style 10x50 hd binoculars is listed, so I choose it and then "
    "buy.]\nObservation: OK.\nAction: click[10x50 hd binoculars]\nObservation:\n"
    + _BINOCULARS_ITEM
    + "\nAction: click[buy now]"
)
