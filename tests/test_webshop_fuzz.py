"""Reliability: >= 10,000 random and adversarial actions; nothing raises, state stays valid, errors are reported."""

import numpy as np

from rlem_gym.envs.webshop import WebShopEnv, page_type
from rlem_gym.envs.webshop.env import ENV_PAGES

N_ACTIONS = 10_500

FIXED = [
    "", " ", "\n", "[", "]", "[]", "click", "search", "click[", "click]", "search[", "click[]", "search[]",
    "click[[buy now]", "click[buy now", "click buy now", "clickk[buy now]", "click(buy now)", "Click[Buy Now]",
    "search[[[]]]", "search[a]]", "click[buy now]]", "click[]buy now]", "[click][buy now]", "click[ buy now ]",
    "search[\x00\x01\x02]", "click[\ud800]", "search[😀 emoji]", "click[b07xyz1234]", "click[next >]",
    "click[< prev]", "click[back to search]", "click[description]", "click[reviews]", "click[features]",
    "click[buy now]", "search[shirt]", "search[" + "a b " * 20_000 + "]", "click[" + "x" * 100_000 + "]",
    "z" * 200_000, "search[ünïcödé ßhirt ½ ©]", "click[\t]", "search[\n\n]", "think[i should buy]",
]  # fmt: skip
UNICODE = "aé中😀\u200b\u0301[]\\\"'<>&\x00\n\t "


def _random_string(rng):
    n = int(rng.integers(0, 40))
    return "".join(UNICODE[int(i)] for i in rng.integers(0, len(UNICODE), n))


def test_ten_thousand_random_and_adversarial_actions():
    env = WebShopEnv(split="test", max_steps=40, shown_results=None)
    rng = np.random.default_rng(1234)
    obs, info = env.reset(seed=1234)
    seen_clickables: set[str] = set()
    counts = {"valid": 0, "invalid": 0, "done": 0}
    non_strings = [None, 7, 3.5, b"click[buy now]", ["click[buy now]"], {"a": 1}]
    for step in range(N_ACTIONS):
        acts = info["available_actions"]
        clickables = acts["clickables"]
        seen_clickables.update(clickables)
        kind = int(rng.integers(6))
        if kind == 0 and (clickables or acts["has_search_bar"]):  # a valid move keeps the walk going
            options = [f"click[{c}]" for c in clickables] + (["search[pillow cover]"] if acts["has_search_bar"] else [])
            action = options[int(rng.integers(len(options)))]
        elif kind == 1:
            action = FIXED[int(rng.integers(len(FIXED)))]
        elif kind == 2:
            action = (
                f"click[{sorted(seen_clickables)[int(rng.integers(len(seen_clickables)))]}]"
                if seen_clickables
                else "click[x]"
            )
        elif kind == 3:
            action = _random_string(rng)
        elif kind == 4:
            action = f"{['click', 'search', 'CLICK', 'Search'][int(rng.integers(4))]}[{_random_string(rng)}]"
        else:
            action = "click[buy now]"  # on every page
        if step % 997 == 0:
            action = non_strings[(step // 997) % len(non_strings)]

        # the expected validity, from the spec: a parsable verb whose argument the page offers
        expect_valid = False
        if isinstance(action, str):
            stripped = action.strip()
            low = stripped.lower()
            if low.startswith("click[") and stripped.endswith("]"):
                expect_valid = (
                    " ".join(stripped[6:-1].split()).lower() in clickables
                )  # whitespace runs count as one space
            elif low.startswith("search[") and stripped.endswith("]"):
                expect_valid = acts["has_search_bar"] and stripped[7:-1].strip() != ""

        prev_obs, prev_page = obs, info["page"]
        obs, reward, terminated, truncated, info = env.step(action)

        assert isinstance(obs, str) and obs in env.observation_space
        assert info["page"] in ENV_PAGES and isinstance(info["instruction"], str) and info["instruction"]
        assert page_type(obs) == {"description": "item_sub", "features": "item_sub", "reviews": "item_sub"}.get(
            info["page"], info["page"]
        )
        assert all(c == c.lower() for c in info["available_actions"]["clickables"])
        error = info["last_action_error"]
        if expect_valid:
            assert error == "", (action[:80], error)
            counts["valid"] += 1
        else:
            assert error and "\n" not in error, action[:80] if isinstance(action, str) else action
            assert obs == prev_obs and info["page"] == prev_page and reward == 0.0 and not terminated
            counts["invalid"] += 1
        assert 0.0 <= reward <= 1.0
        if terminated:
            counts["done"] += 1
            assert "reward_details" in info
        if terminated or truncated:
            obs, info = env.reset()
    assert counts["valid"] > 1000 and counts["invalid"] > 5000 and counts["done"] > 10
