"""ExperienceMemory: Q-learning on hand-made 3-step episodes, eviction, double Q, merge, retrieval."""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
import pytest

from rlem_gym.envs.wikihow.patterns import instruction_pattern
from rlem_gym.memory import ActionStats, ExperienceMemory, MemoryKey, Retrieved
from rlem_gym.memory.similarity import WebShopMatcher, WikiHowMatcher
from rlem_gym.trajectory import Situation, Step

TASK = 'Search an article to learn how to hide gauges.\nThen, access the article "How to Hide Gauges"'


def episode(rewards=(0.0, 0.0, 1.0), obs=("A", "B", "C"), actions=("a0", "b0", "c0"), reasons=("", "", "")):
    return [
        Step.of(observation=o, action=a, reward=r, reason=why) for o, a, r, why in zip(obs, actions, rewards, reasons)
    ]


def mem(**kw) -> ExperienceMemory:
    return ExperienceMemory(WikiHowMatcher(instruction_pattern), **kw)


def q(m: ExperienceMemory, obs: str, action: str, task: str = TASK) -> float:
    return m.get(MemoryKey(task, obs)).actions[action].q


# ----------------------------------------------------------------------------- Q-learning semantics
def test_full_return_default_and_gamma():
    m = mem()  # n_step=None, gamma=1
    m.update(TASK, episode())
    assert [q(m, o, a) for o, a in zip("ABC", ("a0", "b0", "c0"))] == [1.0, 1.0, 1.0]
    m2 = mem(gamma=0.5)
    m2.update(TASK, episode())
    assert [q(m2, o, a) for o, a in zip("ABC", ("a0", "b0", "c0"))] == pytest.approx([0.25, 0.5, 1.0])


def test_success_replay_keeps_only_successes_with_a_constant_value(tmp_path):
    m = mem(learning="success_replay")
    m.update(TASK, episode(rewards=(0.0, 0.0, 0.0), actions=("x0", "y0", "z0")))  # a failure: nothing stored
    assert len(m) == 0
    m.update(TASK, episode(rewards=(0.0, 0.0, 0.3)))  # a success: every step, Q = 1.0 whatever the return
    m.update(TASK, episode(rewards=(0.0, 0.0, 0.0), actions=("a0", "b1", "c1")))  # a later failure changes nothing
    assert len(m) == 3 and [q(m, o, a) for o, a in zip("ABC", ("a0", "b0", "c0"))] == [1.0, 1.0, 1.0]
    assert set(m.get(MemoryKey(TASK, "B")).actions) == {"b0"} and m.get(MemoryKey(TASK, "A")).visits == 1
    # the Q-learning memory stores the same three episodes with their returns, failures included
    ql = mem()
    for rewards, actions in (((0.0,) * 3, ("x0", "y0", "z0")), ((0.0, 0.0, 0.3), ("a0", "b0", "c0"))):
        ql.update(TASK, episode(rewards=rewards, actions=actions))
    assert q(ql, "A", "a0") == pytest.approx(0.3) and q(ql, "A", "x0") == 0.0
    # the rule is part of the saved config
    m.save(tmp_path / "m")
    back = ExperienceMemory.load(tmp_path / "m", WikiHowMatcher(instruction_pattern))
    assert back.learning == "success_replay" and "success_replay" in repr(back)
    with pytest.raises(ValueError, match="q_learning, success_replay"):
        mem(learning="successes")


def test_one_step_bootstraps_and_propagates_over_episodes_mean_mode():
    m = mem(n_step=1)
    m.update(TASK, episode())
    # first episode: every next key unseen -> max = 0 -> y = r
    assert [q(m, "A", "a0"), q(m, "B", "b0"), q(m, "C", "c0")] == [0.0, 0.0, 1.0]
    m.update(TASK, episode())
    # second: y_B = 0 + V(C) = 1 -> mean of (0, 1) = 0.5; y_A = 0 + V(B) = 0 (snapshot) -> 0
    assert [q(m, "A", "a0"), q(m, "B", "b0"), q(m, "C", "c0")] == pytest.approx([0.0, 0.5, 1.0])
    assert m.get(MemoryKey(TASK, "B")).actions["b0"].visits == 2
    m.update(TASK, episode())
    # third: y_A = V(B) = 0.5 -> mean(0, 0, 0.5) = 1/6; y_B = 1 -> mean(0, 1, 1) = 2/3
    assert [q(m, "A", "a0"), q(m, "B", "b0")] == pytest.approx([1 / 6, 2 / 3])


def test_const_mode_uses_lr():
    m = mem(n_step=1, update_mode="const", lr=0.1)
    m.update(TASK, episode())
    m.update(TASK, episode())
    assert q(m, "B", "b0") == pytest.approx(0.1)  # 0 + 0.1 * (1 - 0)
    assert q(m, "C", "c0") == pytest.approx(1.0)


def test_n_step_with_gamma_on_a_seeded_memory():
    m = mem(n_step=2, gamma=0.5)
    m.update(TASK, [Step.of("C", "x", 4.0)])  # V(C) = 4
    m.update(TASK, episode(rewards=(1.0, 0.0, 2.0), actions=("a0", "b0", "c1")))
    # y_A = 1 + 0.5*0 + 0.25*V(C)=1 -> 2; y_B = 0 + 0.5*2 (past the end) = 1; y_C = 2
    assert q(m, "A", "a0") == pytest.approx(2.0)
    assert q(m, "B", "b0") == pytest.approx(1.0)
    assert q(m, "C", "c1") == pytest.approx(2.0)


def test_one_n_and_full_give_different_tables():
    vals = {}
    for n in (1, 2, None):
        m = mem(n_step=n)
        m.update(TASK, [Step.of("C", "x", 0.5)])  # V(C) = 0.5, seen before the episode
        m.update(TASK, episode(rewards=(1.0, 0.0, 2.0), actions=("a0", "b0", "c1")))
        vals[n] = (q(m, "A", "a0"), q(m, "B", "b0"))
    assert vals[1] == pytest.approx((1.0, 0.5))  # y_A = 1 + V(B)=0 (unseen); y_B = 0 + V(C) = 0.5
    assert vals[2] == pytest.approx((1.5, 2.0))  # y_A = 1 + 0 + V(C); y_B = 0 + 2
    assert vals[None] == pytest.approx((3.0, 2.0))


def test_unseen_next_state_counts_zero_but_a_seen_negative_one_does_not():
    m = mem(n_step=1)
    m.update(TASK, [Step.of("B", "bad", -1.0)])  # V(B) = -1
    m.update(TASK, [Step.of("A", "a0", 0.0), Step.of("B", "b0", 0.0)])
    assert q(m, "A", "a0") == pytest.approx(-1.0)  # bootstraps from the seen B
    m.update(TASK, [Step.of("N", "n0", 0.0), Step.of("NEW", "z", 0.0)])
    assert q(m, "N", "n0") == 0.0  # NEW was unseen


def test_record_context_reason_and_sorted_actions():
    m = mem()
    m.update(
        TASK, [Step.of("A", "a0", 1.0, reason="first", last_actions=("p",) * 7, last_reward=0.5, total_reward=2.0)]
    )
    m.update(TASK, [Step.of("A", "a1", -1.0, reason="no"), Step.of("B", "b0", 0.0)])
    m.update(TASK, [Step.of("A", "a0", 0.0, reason="")])
    rec = m.get(MemoryKey(TASK, "A"))
    assert rec.visits == 3 and rec.situation.last_actions == ()  # the most recent visit's context
    assert rec.situation.total_reward == 0.0
    assert rec.actions["a0"].reason == "first"  # latest non-empty reason kept
    assert rec.actions["a0"].last_reward == 0.0
    assert [a for a, _ in rec.sorted_actions()] == ["a0", "a1"]
    m.update(TASK, [Step.of("C", "c", 1.0, last_actions=tuple("abcdefg"))])
    assert m.get(MemoryKey(TASK, "C")).situation.last_actions == tuple("cdefg")  # last 5


def test_a_record_keeps_the_situation_of_its_latest_step():
    m = mem()
    seen = Situation(TASK, "A", "", ("search[x]",), 1.0, 1.0, ("click[b1]", "back to search"))
    m.update(TASK, [Step(seen, "click[b1]", 1.0, "the match")])
    rec = m.get(seen.key)
    assert rec.situation == seen and rec.key == MemoryKey(TASK, "A")
    m.update(TASK, [Step.of("A", "back to search", 0.0, last_reward=0.5)])  # a step may leave its task empty
    assert rec.situation == Situation(TASK, "A", last_reward=0.5) and rec.key == seen.key and rec.visits == 2


def test_update_refuses_a_step_of_another_task_and_a_non_step():
    m = mem()
    with pytest.raises(ValueError, match="an episode's steps share its task"):
        m.update(TASK, [Step(Situation("another task", "A"), "x", 1.0)])
    with pytest.raises(TypeError, match="list of Step"):
        m.update(TASK, [("A", "x", 1.0)])
    assert len(m) == 0
    m.update(TASK, [Step.of("B", "x", 1.0)])
    with pytest.raises(ValueError, match="keyed by"):
        m.get(MemoryKey(TASK, "B")).revisit(Situation(TASK, "C"))


# ----------------------------------------------------------------------------- double Q
def test_double_q_table_choice_under_a_fixed_seed():
    seed = 2
    rng = np.random.default_rng(seed)
    choices = [int(rng.integers(2)) for _ in range(3)]
    assert set(choices) == {0, 1}  # this seed trains both tables
    m = mem(double_q=True, seed=seed)
    m.update(TASK, episode(rewards=(1.0, 2.0, 3.0)))
    for obs, action, c in zip("ABC", ("a0", "b0", "c0"), choices):
        rec = m.get(MemoryKey(TASK, obs))
        assert action in rec.tables[c] and action not in rec.tables[1 - c]
        assert rec.actions[action].q == rec.tables[c][action].q  # merge of one table = that table


def test_double_q_bootstrap_and_average_merge():
    seed = 2
    choice0 = int(np.random.default_rng(seed).integers(2))
    m = mem(double_q=True, seed=seed, n_step=1)
    nxt = m._insert(Situation(TASK, "N"))
    nxt.tables[0].update(x=ActionStats(5.0), y=ActionStats(1.0))
    nxt.tables[1].update(x=ActionStats(2.0), y=ActionStats(7.0))
    m.update(TASK, [Step.of("A", "a0", 0.0), Step.of("N", "x", 0.0)])
    # A's table choice[0] picks the argmax, the other table values it
    expected = 2.0 if choice0 == 0 else 1.0
    assert m.get(MemoryKey(TASK, "A")).tables[choice0]["a0"].q == expected
    merged = m.get(MemoryKey(TASK, "N")).actions
    assert merged["y"].q == pytest.approx((1.0 + 7.0) / 2)  # retrieval sees the average


# ----------------------------------------------------------------------------- eviction
def test_record_eviction_lowest_visits_then_oldest():
    m = mem(capacity=3)
    m.update(TASK, [Step.of("A", "a", 1.0), Step.of("B", "b", 1.0)])
    m.update(TASK, [Step.of("A", "a", 1.0), Step.of("C", "c", 1.0)])  # A: 2 visits; B older than C
    m.update(TASK, [Step.of("D", "d", 1.0)])
    assert sorted(r.key.observation for r in m.records()) == ["A", "C", "D"]  # B evicted
    m.update(TASK, [Step.of("E", "e", 1.0)])
    assert sorted(r.key.observation for r in m.records()) == ["A", "D", "E"]  # C (older than D)
    assert len(m) == 3


def test_record_eviction_policies_are_configurable():
    m = mem(capacity=2, eviction="oldest")
    m.update(TASK, [Step.of("A", "a", 1.0), Step.of("A", "a", 1.0), Step.of("B", "b", 1.0)])
    m.update(TASK, [Step.of("C", "c", 1.0)])
    assert sorted(r.key.observation for r in m.records()) == ["B", "C"]
    m = mem(capacity=2, eviction=lambda r: -r.visits)  # custom: evict the most visited
    m.update(TASK, [Step.of("A", "a", 1.0), Step.of("A", "a", 1.0), Step.of("B", "b", 1.0)])
    m.update(TASK, [Step.of("C", "c", 1.0)])
    assert sorted(r.key.observation for r in m.records()) == ["B", "C"]
    with pytest.raises(ValueError, match="eviction"):
        mem(eviction="random")


def test_action_eviction_lowest_abs_q_then_fewest_visits():
    m = mem(action_capacity=2)
    m.update(TASK, [Step.of("A", "a1", 0.5)])
    m.update(TASK, [Step.of("A", "a2", -0.2)])
    m.update(TASK, [Step.of("A", "a3", 0.3)])
    assert set(m.get(MemoryKey(TASK, "A")).actions) == {"a1", "a3"}  # |-0.2| lowest
    m.update(TASK, [Step.of("A", "a3", 0.5)])  # a3: Q 0.4 -> mean(0.3, 0.5)=0.4, 2 visits
    m.update(TASK, [Step.of("A", "a1", 0.5)])  # a1: Q 0.5, 2 visits
    m.update(TASK, [Step.of("A", "a4", -0.4)])  # a3 (|0.4|) goes before a1 (|0.5|)
    assert set(m.get(MemoryKey(TASK, "A")).actions) == {"a1", "a4"}
    m2 = mem(action_capacity=2)
    for r, a in ((0.5, "x"), (0.5, "x"), (0.5, "x"), (-0.5, "y"), (1.0, "z")):
        m2.update(TASK, [Step.of("A", a, r)])
    assert set(m2.get(MemoryKey(TASK, "A")).actions) == {"x", "z"}  # y: same |Q| as x, fewer visits


def test_memory_never_freezes():
    m = mem(capacity=5)
    for i in range(50):
        m.update(TASK, [Step.of(f"o{i}", "a", 1.0)])
    assert len(m) == 5
    assert m.get(MemoryKey(TASK, "o49")) is not None  # the newest key got in


# ----------------------------------------------------------------------------- merge
def test_merge_is_visit_weighted():
    a, b = mem(), mem()
    a.update(TASK, [Step.of("A", "x", 1.0)])
    for _ in range(3):
        b.update(TASK, [Step.of("A", "x", 0.0), Step.of("B", "y", 0.0)])
    b.update(TASK, [Step.of("A", "z", 2.0, reason="why z")])
    a.merge(b)
    rec = a.get(MemoryKey(TASK, "A"))
    assert rec.actions["x"].q == pytest.approx((1.0 * 1 + 0.0 * 3) / 4)
    assert rec.actions["x"].visits == 4 and rec.visits == 5
    assert rec.actions["z"].q == 2.0 and rec.actions["z"].reason == "why z"
    assert a.get(MemoryKey(TASK, "B")).actions["y"].visits == 3
    assert len(a) == 2


# ----------------------------------------------------------------------------- retrieval
TASKS = {
    "gauges": 'Search an article to learn how to hide gauges.\nThen, access the article "How to Hide Gauges"',
    "friend": (
        "Search an article to learn how to be a good friend to a guy.\n"
        'Then, access the article "How to Be a Good Friend to a Guy"\n'
        "Then, check the author page of Trudi Griffin, LPC, MS."
    ),
    "pan": "Search an article to learn how to clean a nonstick pan.\nThen, check the reference list",
}


def test_wikihow_retrieval_finds_the_right_record_among_distractors():
    m = mem()
    instrs = [
        'Access the article "How to Hide Gauges"',
        "Check the author page of Trudi Griffin, LPC, MS.",
        "Check the reference list",
    ]
    for name, task in TASKS.items():
        for i, ins in enumerate(instrs):
            m.update(task, [Step.of(f"<screen {name} {i}>", f"CLICK({i})", 1.0, instruction=ins)])
    query_task = TASKS["friend"].replace("guy", "girl")  # a similar, not identical, task
    hits = m.retrieve(query_task, "<new screen>", "Check the author page of Ashley Adams.", k=2)
    assert isinstance(hits[0], Retrieved)
    assert hits[0].record.key == MemoryKey(TASKS["friend"], "<screen friend 1>", instrs[1])
    assert hits[0].obs_score == 1.0 and 0.8 < hits[0].task_score < 1.0
    assert hits[0].score == pytest.approx(0.5 * hits[0].task_score + 0.5)
    assert hits[0].score >= hits[1].score
    # the reference-list pattern matches too
    hits = m.retrieve(TASKS["pan"], "<x>", "Then, check the reference list", k=1)
    assert hits[0].record.key.observation == "<screen pan 2>" and hits[0].score == pytest.approx(1.0)
    assert m.retrieve(TASKS["pan"], "<x>", k=0) == []


GOALS = [
    "i need a long clip-in hair extension which is natural looking",
    "i want a noise cancelling cosycost usb microphone",
    "im looking for hair treatments that are sulfate and paraben free",
    "i want a pair of red running shoes in size 9",
    "find me a queen size memory foam mattress under 300 dollars",
]


def test_webshop_retrieval_finds_the_right_record_among_distractors(minilm, page_kind):
    m = ExperienceMemory(WebShopMatcher(minilm, page_kind))
    for g in GOALS:
        m.update(
            g,
            [
                Step.of("search page", "search[x]", 0.0),
                Step.of(f"results for {g}", "click[b0]", 0.0),
                Step.of(f"item {g}", "click[buy now]", 1.0),
            ],
        )
    hits = m.retrieve("looking for a usb microphone that cancels noise", "results page 1", k=2)
    assert hits[0].record.key == MemoryKey(GOALS[1], f"results for {GOALS[1]}")
    assert hits[0].obs_score == 1.0 and hits[0].task_score > 0.5
    # the second hit is another results page (same page type beats the same task on another page)
    assert hits[1].record.key.observation.startswith("results") and hits[1].score < hits[0].score
    m2 = ExperienceMemory(WebShopMatcher(minilm, page_kind, lam=1.0))
    m2.update(GOALS[1], [Step.of("search", "search[x]", 0.0)])
    m2.update(GOALS[0], [Step.of("search", "search[x]", 0.0)])
    s = [h.task_score for h in m2.retrieve("usb microphone", "item", k=2)]
    assert s[0] > s[1] and s[0] != 1.0  # a real cosine, not the official constant 1.0


@pytest.mark.parametrize("index", ["flat", "ivf", "hnsw"])
def test_index_stays_consistent_under_eviction(minilm, page_kind, index):
    opts = {"ivf_min": 32, "nprobe": 64} if index == "ivf" else {}
    m = ExperienceMemory(WebShopMatcher(minilm, page_kind), capacity=40, index=index, index_options=opts)
    for i in range(120):
        g = GOALS[i % len(GOALS)] + f" variant {i}"
        m.update(g, [Step.of(("search", "results", "item")[i % 3] + f" {i}", "a", float(i % 2))])
    assert len(m) == 40 and len(m._index) == 40
    live = {r.id for r in m.records()}
    for g in GOALS:
        hits = m.retrieve(g, "item z", k=5)
        assert len(hits) == 5 and {h.record_id for h in hits} <= live
    # the exact brute-force answer for one query equals the indexed one
    hits = m.retrieve(GOALS[2], "results z", k=3)
    qv = minilm.encode([GOALS[2]])[0]
    exact = sorted(
        m.records(),
        key=lambda r: (-(0.5 * float(minilm.encode([r.key.task])[0] @ qv) + 0.5 * (r.feature == "results")), r.id),
    )[:3]
    assert [h.record_id for h in hits] == [r.id for r in exact]


# ----------------------------------------------------------------------------- review fixes
class CountingEmbedder:
    """A deterministic fake embedder (no cache) that counts how often each text is encoded."""

    name, dim = "test/hash-embedder", 16

    def __init__(self):
        self.calls: Counter[str] = Counter()

    def encode(self, texts):
        rows = []
        for t in texts:
            self.calls[t] += 1
            v = np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


def test_a_task_is_encoded_once_even_after_the_record_that_held_its_vector_is_evicted(page_kind):
    emb = CountingEmbedder()
    m = ExperienceMemory(WebShopMatcher(emb, page_kind), capacity=3)
    m.update("task t", [Step.of("search a", "x", 0.0), Step.of("results b", "y", 1.0)])
    m.update("task u", [Step.of("search c", "z", 0.0)])
    m.update("task u", [Step.of("item d", "z", 0.0)])  # evicts the first record of "task t"
    assert MemoryKey("task t", "search a") not in m and MemoryKey("task t", "results b") in m
    m.retrieve("task t", "results e", k=2)
    tasks, vecs = m.task_vectors()
    assert emb.calls == {"task t": 1, "task u": 1}
    assert np.array_equal(vecs[tasks.index("task t")], CountingEmbedder().encode(["task t"])[0])
    m.update("task v", [Step.of("search f", "x", 0.0)])  # a new task at capacity: still one encode
    assert emb.calls["task v"] == 1


def test_scan_retrieval_breaks_ties_by_age_across_groups():
    m = ExperienceMemory(WikiHowMatcher(instruction_pattern, lam=1.0))  # lam 1: every record of TASK ties
    for i, ins in enumerate(("Check the reference list", 'Access the article "How to X"', "Check the reference list")):
        m.update(TASK, [Step.of(f"s{i}", "a", 0.0, instruction=ins)])
    assert [h.record_id for h in m.retrieve(TASK, "q", "Check the reference list", k=2)] == [0, 1]
    assert [h.record_id for h in m.retrieve(TASK, "q", "Check the reference list", k=3)] == [0, 1, 2]


def test_merged_tables_respect_action_capacity():
    big = mem()
    for a, r in (("a1", 0.5), ("a2", -0.2), ("a3", 0.3)):
        big.update(TASK, [Step.of("A", a, r)])
    for double_q in (False, True):
        small = mem(action_capacity=2, double_q=double_q)
        small.merge(big)  # a new key: inserted with the whole table, then trimmed
        rec = small.get(MemoryKey(TASK, "A"))
        assert set(rec.actions) == {"a1", "a3"}  # |-0.2| lowest
        assert all(len(t) <= 2 for t in rec.tables or [rec.actions])
    small = mem(action_capacity=2)
    small.update(TASK, [Step.of("A", "a4", 0.9)])
    small.merge(big)  # a shared key: one eviction per new action, in table order
    assert set(small.get(MemoryKey(TASK, "A")).actions) == {"a4", "a3"}
