"""WebShopEnv: Gymnasium API, pages and transitions, determinism, truncation, splits, the search cache."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rlem_gym  # noqa: F401  (registers the ids)
from rlem_gym.envs.webshop import WebShopEnv, page_type
from rlem_gym.envs.webshop import search as search_mod
from rlem_gym.envs.webshop.reward import get_reward

ENV_ID = "rlem_gym/WebShop-v0"


@pytest.fixture(scope="module")
def env():
    e = WebShopEnv(split="test")
    yield e
    e.close()


def _random_valid_action(info, rng, keywords="pillow"):
    acts = info["available_actions"]
    choices = [f"click[{c}]" for c in acts["clickables"]]
    if acts["has_search_bar"]:
        choices.append(f"search[{keywords}]")
    return choices[int(rng.integers(len(choices)))]


def test_scripted_episode_buys_its_own_goal_for_reward_one(env):
    obs, info = env.reset(seed=0, options={"task_index": 0})
    goal = env.goal
    assert info["goal_index"] == 0 and info["task_index"] == 0 and info["page"] == "search"
    assert obs.startswith("WebShop [SEP] Instruction: [SEP] ") and obs.endswith(" [SEP] Search")
    assert info["instruction"] == goal["instruction_text"] and obs in env.observation_space
    obs, r, term, trunc, info = env.step("search[double sided machine washable decorative pillows printing technology]")
    assert (r, term, trunc, info["last_action_error"], info["page"]) == (0.0, False, False, "", "results")
    assert "Page 1 (Total results: 50)" in obs and goal["asin"].lower() in info["available_actions"]["clickables"]
    obs, r, term, trunc, info = env.step(f"click[{goal['asin']}]")  # upper-case ASIN is accepted too
    assert info["page"] == "item" and info["asin"] == goal["asin"] and "Buy Now" in obs
    for value in goal["goal_options"].values():
        obs, r, term, trunc, info = env.step(f"click[{value}]")
        assert info["last_action_error"] == ""
    assert info["options"] == goal["goal_options"]
    obs, r, term, trunc, info = env.step("click[description]")
    assert info["page"] == "description" and page_type(obs) == "item_sub"
    obs, r, term, trunc, info = env.step("click[< prev]")
    assert info["page"] == "item" and info["options"] == goal["goal_options"]  # options survive a sub-page
    obs, r, term, trunc, info = env.step("click[buy now]")
    assert r == 1.0 and term and not trunc and info["page"] == "done"
    assert info["reward_details"]["r_type"] == 1.0 and info["purchased"]["asin"] == goal["asin"]
    assert all(type(v) in (float, bool) for v in info["reward_details"].values()) and type(r) is float
    obs2, r2, term2, _, info2 = env.step("click[buy now]")  # after the end: no reward, still terminated
    assert (r2, term2, obs2) == (0.0, True, obs) and info2["last_action_error"]


def test_navigation_pages_and_invalid_actions(env):
    obs, info = env.reset(options={"task_index": 3})
    _, _, _, _, info = env.step("click[buy now]")
    assert "no clickable 'buy now' on the search page" in info["last_action_error"]
    obs, _, _, _, info = env.step("search[shoes]")
    assert info["available_actions"] == {"has_search_bar": False, "clickables": info["available_actions"]["clickables"]}
    assert info["available_actions"]["clickables"][:2] == ["back to search", "next >"]
    before = obs
    obs, r, _, _, info = env.step("search[again]")
    assert obs == before and r == 0.0 and "only on the search page" in info["last_action_error"]
    obs, _, _, _, info = env.step("click[next >]")
    assert "Page 2 (Total results: " in obs and "< prev" in info["available_actions"]["clickables"]
    obs, _, _, _, info = env.step("click[< prev]")
    assert "Page 1 (Total results: " in obs
    first = next(c for c in info["available_actions"]["clickables"] if c.startswith("b0"))
    obs, _, _, _, info = env.step(f"click[{first}]")
    assert info["page"] == "item"
    obs, _, _, _, info = env.step("click[< prev]")  # item -> the results page it came from
    assert info["page"] == "results" and info["options"] == {}
    obs, _, _, _, info = env.step("click[back to search]")
    assert info["page"] == "search" and info["available_actions"]["has_search_bar"]
    _, _, _, _, info = env.step("search[]")
    assert "needs keywords" in info["last_action_error"]
    obs, _, _, _, info = env.step("search[zzzzqqq]")
    assert "Page 1 (Total results: 0)" in obs and info["available_actions"]["clickables"] == ["back to search"]


def test_text_rich_marks_clicked_options_and_visited_products():
    e = WebShopEnv(observation_mode="text_rich", split="test", render_mode="ansi")
    e.reset(options={"task_index": 0})
    goal = e.goal
    obs, *_ = e.step("search[decorative pillows]")
    assert "[button] Back to Search [button_]" in obs and page_type(obs) == "results"
    obs, *_ = e.step(f"click[{goal['asin'].lower()}]")
    value = goal["goal_options"]["size"]
    obs, *_ = e.step(f"click[{value}]")
    assert obs.startswith(f"You have clicked {value}.\n") and f"  [clicked button] {value} [clicked button_]" in obs
    assert page_type(obs) == "item" and e.render() == obs
    obs, *_ = e.step("click[< prev]")
    assert f"\n[clicked button] {goal['asin']} [clicked button_]" in obs
    e.close()


def test_shown_results_three_is_the_react_view():
    e = WebShopEnv(split="test", shown_results=3)
    e.reset(options={"task_index": 0})
    obs, _, _, _, info = e.step("search[pillow]")
    asins = [c for c in info["available_actions"]["clickables"] if c.startswith("b0")]
    assert len(asins) == 3 and obs.count(" [SEP] $") == 3
    full = WebShopEnv(split="test")
    full.reset(options={"task_index": 0})
    _, _, _, _, info_full = full.step("search[pillow]")
    assert [c for c in info_full["available_actions"]["clickables"] if c.startswith("b0")][:3] == asins


def test_page_type_on_every_page_and_cut_observations():
    assert page_type("WebShop [SEP] Instruction: [SEP] buy a hat [SEP] Search") == "search"
    assert (
        page_type(
            "[SEP] Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] B000VOHH8I [SEP] t [SEP] $1"
        )
        == "results"
    )
    item = "[SEP] Back to Search [SEP] < Prev [SEP] size [SEP] 2.5 fl oz [SEP] t [SEP] Price: $64.98 [SEP] Rating: N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"
    assert page_type(item) == "item"
    assert page_type("[SEP] Back to Search [SEP] < Prev [SEP] Great soap.\nLine two") == "item_sub"
    assert page_type("[button] Back to Search [button_]\n[button] < Prev [button_]\nA long description\n") == "item_sub"


def test_truncation_and_step_counting():
    e = WebShopEnv(split="test", max_steps=3)
    e.reset(options={"task_index": 1})
    results = [e.step("nonsense") for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True] and not any(r[2] for r in results)
    assert results[-1][4]["steps"] == 3
    wrapped = gym.make(ENV_ID, max_steps=15)
    wrapped.reset(seed=0)
    out = [wrapped.step("click[nothing]") for _ in range(15)]
    assert out[-1][3] is True and not any(o[3] for o in out[:-1])


def test_determinism_under_a_seed():
    def rollout(seed):
        e = WebShopEnv(split="test")
        obs, info = e.reset(seed=seed)
        rng = np.random.default_rng(seed)
        trace = [obs]
        for _ in range(40):
            obs, r, term, trunc, info = e.step(_random_valid_action(info, rng))
            trace.append((obs, r, term, trunc))
            if term or trunc:
                obs, info = e.reset()
                trace.append(obs)
        return trace

    assert rollout(7) == rollout(7)
    assert rollout(7) != rollout(8)


def test_reset_options_and_splits():
    e = WebShopEnv(split="train")
    assert e.num_tasks == 200
    _, info = e.reset(options={"goal_index": e.split[5]})
    assert info["task_index"] == 5
    _, info = e.reset(options={"goal_index": 0})  # a test goal: not in the train split
    assert info["task_index"] == -1 and info["goal_index"] == 0
    with pytest.raises(ValueError, match="out of range"):
        e.reset(options={"task_index": 200})
    assert WebShopEnv(split=[4, 2]).split == [4, 2]
    with pytest.raises(ValueError, match="out of range"):
        WebShopEnv(split=[10**6])
    human = WebShopEnv(goals="human")
    assert human.num_tasks == 13
    with pytest.raises(ValueError, match="full"):
        WebShopEnv(goals="human", split="paper_test")
    with pytest.raises(ValueError, match="human goals"):
        WebShopEnv(split="paper_train_S0")
    with pytest.raises(ValueError, match="observation_mode"):
        WebShopEnv(observation_mode="html")


def test_data_files_are_the_catalog_files(env):
    files = env.data_files
    assert [f.name for f in files] == [
        "items_shuffle_1000.reconstructed.json.gz",
        "items_ins_v2_1000.json.gz",
        "items_human_ins.small_subset.json",
    ]
    assert all(isinstance(f, Path) and f.is_file() for f in files)
    assert gym.make(ENV_ID).unwrapped.data_files == files


def test_search_index_is_not_rebuilt_on_reset_or_new_envs():
    e = WebShopEnv(split="test")
    before = dict(search_mod.STATS)
    for i in range(5):
        e.reset(options={"task_index": i})
        e.step("search[shirt]")
    WebShopEnv(split="train", observation_mode="text_rich").reset(seed=0)
    assert search_mod.STATS == before


def test_options_with_odd_whitespace_are_clickable_in_normalised_form():
    """Catalog option values with a non-breaking space or double spaces: clickable as shown and whitespace-collapsed."""
    e = WebShopEnv(split=[1605])  # product B09NPML43M, goal colour "a1-wine\xa0red", size "3x-large"
    _, info = e.reset(options={"task_index": 0})
    goal = e.goal
    assert goal["asin"] == "B09NPML43M" and goal["goal_options"]["color"] == "a1-wine\xa0red"
    e.step(f"search[{goal['name']}]")
    obs, _, _, _, info = e.step("click[b09npml43m]")
    assert "a1-wine\xa0red" in obs  # the observation shows the catalog's text unchanged
    clickables = info["available_actions"]["clickables"]
    assert "a1-wine red" in clickables and "b17-army green" in clickables
    assert all(c == " ".join(c.split()) for c in clickables)
    for action in ("click[a1-wine red]", "click[ A1-Wine  Red ]", "click[a1-wine\xa0red]", "click[b17-army green]"):
        _, _, _, _, info = e.step(action)
        assert info["last_action_error"] == "", action
    assert info["options"]["color"] == "b17-army\xa0green"  # the original value, as the reward matches it
    e.step("click[a1-wine red]")
    _, _, _, _, info = e.step("click[3x-large]")
    assert info["options"] == goal["goal_options"]
    _, r, term, _, info = e.step("click[buy now]")
    assert term and info["purchased"]["options"] == {"color": "a1-wine\xa0red", "size": "3x-large"}
    product, price = e.catalog.by_asin[goal["asin"]], e.catalog.prices[goal["asin"]]
    assert r == get_reward(product, goal, price, {"color": "a1-wine\xa0red", "size": "3x-large"})
    e.close()


def test_double_spaced_option_is_clickable():
    e = WebShopEnv(split="test")
    e.reset(options={"task_index": 0})
    product = e.catalog.by_asin["B004VMVLLU"]  # a product without goals; its size "8.4 ounce  |  250 ml"
    e.step(f"search[{product['Title']}]")
    obs, _, _, _, info = e.step("click[b004vmvllu]")
    assert "8.4 ounce  |  250 ml" in obs and "8.4 ounce | 250 ml" in info["available_actions"]["clickables"]
    _, _, _, _, info = e.step("click[8.4 ounce | 250 ml]")
    assert info["last_action_error"] == "" and info["options"] == {"size": "8.4 ounce  |  250 ml"}
    _, _, _, _, info = e.step("click[8.4 ounce  |  250 ml]")  # the raw text keeps working
    assert info["last_action_error"] == ""


def test_missing_spacy_model_fails_at_construction_not_in_step(monkeypatch):
    from rlem_gym.envs.webshop import reward as reward_mod

    monkeypatch.setattr(reward_mod, "SPACY_MODELS", ("no_such_spacy_model_xyz",))
    monkeypatch.setattr(reward_mod, "_nlp", None)  # as in a fresh process
    with pytest.raises(RuntimeError, match="no spaCy English model"):
        WebShopEnv(split="test")
