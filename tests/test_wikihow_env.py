"""WikiHowEnv: Gymnasium API, determinism, sub-goal semantics, the oracle and a 10k-action fuzz."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rlem_gym  # noqa: F401  (registers the ids)
from rlem_gym.envs.wikihow import WikiHowOracle, instruction_pattern
from rlem_gym.envs.wikihow.env import WikiHowEnv, parse_action
from rlem_gym.envs.wikihow.search import TitleSearch

LEI = "make_a_lei-4"
FUZZ_WORDS = ["how", "to", "make", "lei", "fear", "stock", "¿", '"', ")", "\n"]


@pytest.fixture(scope="module")
def env():
    e = gym.make("rlem_gym/WikiHow-v0", task_set="microcanon70", render_mode="ansi")
    yield e
    e.close()


def run_oracle(env, index: int) -> tuple[float, int, dict]:
    oracle = WikiHowOracle()
    obs, info = env.reset(seed=0, options={"task_index": index})
    total, steps, term, trunc = 0.0, 0, False, False
    while not (term or trunc):
        obs, r, term, trunc, info = env.step(oracle.act(obs, info))
        assert info["last_action_error"] == "", info["last_action_error"]
        total += r
        steps += 1
    return total, steps, info


def test_task_sets_and_contract_info(env):
    assert env.unwrapped.num_tasks == 70
    assert WikiHowEnv(task_set="canonical178").num_tasks == 178
    assert WikiHowEnv(task_set="train_S0").num_tasks == 10
    assert WikiHowEnv(task_set="train_S1").num_tasks == 10
    obs, info = env.reset(seed=1, options={"task_index": 6})
    assert set(info) == {
        "task_lines",
        "instruction",
        "subgoals_total",
        "subgoals_done",
        "page",
        "task_id",
        "task_index",
        "clickable_ids",
        "input_ids",
        "last_action_error",
    }
    assert info["task_lines"] == [
        "Search an article to learn how to be a good friend to a guy.",
        'Then, access the article "How to Be a Good Friend to a Guy"',
        "Then, check the author page of Trudi Griffin, LPC, MS.",
        'Then, access the article "How to Overcome Fear"',
    ]
    assert info["instruction"] == "" and info["page"] == "home" and info["task_index"] == 6
    assert info["subgoals_total"] == 4 and info["input_ids"] == [2]
    assert obs == env.render() and obs in env.observation_space
    _obs, info2 = env.reset(options={"task_id": info["task_id"]})
    assert info2["task_index"] == 6
    with pytest.raises(ValueError, match="task_index"):
        env.reset(options={"task_index": 70})
    with pytest.raises(ValueError, match="task_set"):
        WikiHowEnv(task_set="nope")
    files = env.unwrapped.data_files
    assert isinstance(files, tuple) and all(isinstance(f, Path) and f.is_file() for f in files)
    assert [f.name for f in files] == ["wikihow_bundle.json.gz"]


@pytest.mark.parametrize("bad", [2.7, True, "3", None])
def test_task_index_must_be_an_int(bad):
    e = WikiHowEnv(task_set="microcanon70")
    with pytest.raises(ValueError, match="task_index"):
        e.reset(options={"task_index": bad})
    assert e.reset(options={"task_index": np.int64(3)})[1]["task_index"] == 3


def test_step_before_reset_is_an_error_not_a_crash():
    e = WikiHowEnv(task_set="microcanon70")
    for action in ("SCROLL(DOWN)", "INPUT(2, make a lei)", "CLICK(0)"):
        obs, r, term, trunc, info = e.step(action)
        assert (obs, r, term, trunc) == ("", 0.0, False, False)
        assert info["last_action_error"] == "call reset() before step()"
    obs, info = e.reset(options={"task_id": LEI})
    assert e.step("INPUT(2, make a lei)")[1] == 1.0


def test_cached_screens_hand_out_fresh_id_lists(env):
    _obs, info = env.reset(options={"task_index": 0})
    info["clickable_ids"].clear()
    info["input_ids"].append(99)
    info["task_lines"].clear()
    *_rest, info2 = env.step("GOBACK")  # invalid: same (cached) screen
    assert info2["clickable_ids"] and info2["input_ids"] == [2] and info2["task_lines"]


def test_search_ties_keep_corpus_order_at_the_cut_off():
    titles = [f"Cook Rice Number{i}" for i in range(300)] + ["Bake Bread", "Cook Rice"]
    search = TitleSearch(titles)
    # "Cook Rice" is shorter, so it scores higher; the 300 others tie: the first ones are kept
    assert search.search("rice", k=20) == ["Cook Rice"] + titles[:19]
    assert search.search("bread", k=20) == ["Bake Bread"]  # zero scores are dropped


def test_seeded_resets_and_rollouts_are_deterministic():
    def rollout(seed: int) -> list:
        e = WikiHowEnv(task_set="canonical178")
        obs, info = e.reset(seed=seed)
        rng = np.random.default_rng(seed)
        trace = [info["task_id"], obs]
        for _ in range(40):
            ids = info["clickable_ids"]
            a = f"CLICK({ids[rng.integers(len(ids))]})" if rng.random() < 0.7 else "SCROLL(DOWN)"
            obs, r, term, trunc, info = e.step(a)
            trace.append((a, obs, r, term))
            if term:
                obs, info = e.reset()
        return trace

    assert rollout(3) == rollout(3)
    assert rollout(3)[0] != rollout(4)[0] or rollout(3)[1:] != rollout(4)[1:]


def test_subgoals_fire_once_in_order_with_instructions(env):
    obs, info = env.reset(options={"task_id": LEI})
    # opening an article before searching gives nothing
    obs, r, term, _t, info = env.step("CLICK(4)")
    assert (r, info["subgoals_done"], info["page"]) == (0.0, 0, "article")
    obs, r, *_rest, info = env.step("GOBACK")
    assert info["page"] == "home" and r == 0.0
    # a search without a title keyword does not fire
    obs, r, *_rest, info = env.step("INPUT(2, bake bread)")
    assert r == 0.0 and info["subgoals_done"] == 0
    obs, r, term, _t, info = env.step("INPUT(1, make a lei)")
    assert r == 1.0 and info["instruction"] == 'Access the article "How to Make a Lei"'
    obs, r, *_rest, info = env.step("INPUT(1, lei)")  # the search sub-goal fires only once
    assert r == 0.0 and info["subgoals_done"] == 1
    assert ">How to Make a Lei</div>" in obs
    obs, r, term, _t, info = env.step(f"CLICK({_id_of(obs, 'How to Make a Lei')})")
    assert r == 1.0 and info["page"] == "article"
    assert info["instruction"] == "Check the author page of Claire Donovan-Blackwood."
    obs, r, term, _t, info = env.step(f"CLICK({_id_of(obs, 'Claire Donovan-Blackwood')})")
    assert r == 1.0 and info["page"] == "author" and not term
    obs, r, term, _t, info = env.step("INPUT(1, decoupage flower pots)")
    assert r == 0.0
    obs, r, term, _t, info = env.step(f"CLICK({_id_of(obs, 'How to Decoupage Flower Pots')})")
    assert r == 1.0 and term and info["subgoals_done"] == 4


def _id_of(obs: str, text: str) -> int:
    for line in obs.split("\n"):
        if line.endswith(f">{text}</div>") or line.endswith(f">{text}</p>"):
            return int(line.split(' id="')[1].split('"')[0])
    raise AssertionError(f"{text!r} not on screen:\n{obs}")


def test_invalid_actions_leave_state_unchanged(env):
    obs, info = env.reset(options={"task_index": 0})
    for bad, reason in [
        ("CLICK(1)", "not clickable"),
        ("CLICK(99)", "no element"),
        ("INPUT(0, hello)", "not a text input"),
        ("INPUT(2,   )", "non-empty"),
        ("TYPE hello", "cannot parse"),
        ("GOBACK", "first screen"),
    ]:
        obs2, r, term, trunc, info2 = env.step(bad)
        assert obs2 == obs and r == 0.0 and not term
        assert reason in info2["last_action_error"]
    assert parse_action("SCROLL(down)")[0] == "SCROLL"
    assert parse_action('INPUT(2, "How to Make a Lei")')[1] == (2, "How to Make a Lei")


def test_max_steps_truncates():
    e = WikiHowEnv(task_set="microcanon70", max_steps=3)
    e.reset(options={"task_index": 0})
    flags = [e.step("SCROLL(DOWN)")[3] for _ in range(3)]
    assert flags == [False, False, True]
    wrapped = gym.make("rlem_gym/WikiHow-v0")
    wrapped.reset(seed=0)
    assert [wrapped.step("SCROLL(UP)")[3] for _ in range(15)][-2:] == [False, True]


def test_oracle_solves_every_canonical_task_at_full_reward():
    e = gym.make("rlem_gym/WikiHow-v0", task_set="canonical178")
    micro = WikiHowEnv(task_set="microcanon70")
    micro_ids = {t.task_id for t in micro.tasks}
    solved_micro = 0
    for i in range(e.unwrapped.num_tasks):
        total, steps, info = run_oracle(e, i)
        assert total == info["subgoals_total"] and info["subgoals_done"] == info["subgoals_total"], info["task_id"]
        assert steps <= 15
        solved_micro += info["task_id"] in micro_ids
    assert solved_micro == 70


def test_fuzz_ten_thousand_actions_never_raise():
    e = WikiHowEnv(task_set="canonical178")
    rng = np.random.default_rng(7)
    obs, info = e.reset(seed=7)
    junk = [
        "",
        " ",
        "CLICK",
        "CLICK()",
        "CLICK(-1)",
        "CLICK(1e9)",
        "CLICK(99999999999999999999)",
        "INPUT(,)",
        "INPUT(1)",
        "SCROLL(SIDEWAYS)",
        "GOBACK(1)",
        "click(x)",
        "\x00\x01",
        "ðŸ¤–",
        "INPUT(1, " + "a" * 5000 + ")",
        "CLICK(3)CLICK(4)",
        "<div>",
        "NOTHING",
        None,
        42,
    ]
    n_invalid = 0
    for k in range(10_000):
        roll = rng.random()
        if roll < 0.25:
            a = junk[rng.integers(len(junk))]
        elif roll < 0.55 and info["clickable_ids"]:
            a = f"CLICK({rng.integers(-3, 60)})"
        elif roll < 0.7:
            words = " ".join(rng.choice(FUZZ_WORDS, 3))
            a = f"INPUT({rng.integers(0, 8)}, {words})"
        elif roll < 0.85:
            a = f"SCROLL({rng.choice(['UP', 'DOWN', 'LEFT', 'RIGHT', 'up'])})"
        else:
            a = "GOBACK"
        obs2, r, term, trunc, info2 = e.step(a)
        assert obs2 in e.observation_space and r in (0.0, 1.0, 2.0)
        if info2["last_action_error"]:
            n_invalid += 1
            assert obs2 == obs and r == 0.0
        else:
            assert parse_action(a)[2] == ""
        obs, info = obs2, info2
        if term or trunc or k % 50 == 49:
            obs, info = e.reset()
    assert n_invalid > 1000


@pytest.mark.parametrize(
    "text, pattern",
    [
        ('Access the article "How to Overcome Fear"', 'Access the article "…"'),
        ('Then, access the article "How to Be a Good Friend to a Guy"', 'Access the article "…"'),
        ("Check the author page of Trudi Griffin, LPC, MS.", "Check the author page of …"),
        ("Then, check the author page of Claire Donovan-Blackwood.", "Check the author page of …"),
        ("Access the page of category Financial Stocks", "Access the page of category …"),
        ("Then, access the page of category Computers and Electronics", "Access the page of category …"),
        ("Check the reference list", "Check the reference list"),
        ("Then, check the reference list", "Check the reference list"),
        (
            "Access the about page to learn why people trust wikihow.",
            "Access the about page to learn why people trust wikihow",
        ),
        ("Search an article to learn how to make a lei.", "Search an article to learn how to …"),
        ("", ""),
    ],
)
def test_instruction_pattern_masks_slots(text, pattern):
    assert instruction_pattern(text) == pattern


def test_every_task_instruction_has_a_slot_free_pattern():
    e = WikiHowEnv(task_set="canonical178")
    patterns = set()
    for t in e.tasks:
        for line in t.lines:
            patterns.add(instruction_pattern(line))
        for d in range(1, len(t.subgoals)):
            assert instruction_pattern(t.instruction_after(d)) == instruction_pattern(t.lines[d])
    assert len(patterns) == 6, patterns
