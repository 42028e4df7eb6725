"""The RLEM Q-learning targets and updates: pure functions, values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rlem_gym.memory import qlearning as ql

REWARDS = [1.0, 0.0, 2.0]  # a 3-step episode


def test_full_return_gamma_one_and_discounted():
    assert ql.compute_targets(REWARDS) == [3.0, 2.0, 2.0]
    # gamma 0.5: y0 = 1 + 0.5*0 + 0.25*2 = 1.5; y1 = 0 + 0.5*2 = 1; y2 = 2
    assert ql.compute_targets(REWARDS, None, 0.5) == pytest.approx([1.5, 1.0, 2.0])
    assert ql.discounted_returns(REWARDS, 0.5) == pytest.approx([1.5, 1.0, 2.0])


def test_one_step_targets_bootstrap_from_the_next_state():
    # y_t = r_t + gamma * V(o_{t+1}); the last step has no next state in the episode
    y = ql.compute_targets(REWARDS, n=1, gamma=0.5, bootstrap=[3.0, 4.0, 99.0])
    assert y == pytest.approx([1 + 0.5 * 3, 0 + 0.5 * 4, 2.0])


def test_n_step_targets():
    # n=2, gamma=0.5: y0 = 1 + 0.5*0 + 0.25*V(o2)=0.25*4 -> 2; y1 = 0 + 0.5*2 (o3 is past the end) -> 1; y2 = 2
    y = ql.compute_targets(REWARDS, n=2, gamma=0.5, bootstrap=[4.0, 99.0, 99.0])
    assert y == pytest.approx([2.0, 1.0, 2.0])
    # n >= T is the full return
    assert ql.compute_targets(REWARDS, n=3, gamma=0.5, bootstrap=[7, 7, 7]) == pytest.approx([1.5, 1.0, 2.0])


def test_one_n_full_differ_on_the_same_episode():
    boot = [0.5, 0.5, 0.5]
    one = ql.compute_targets(REWARDS, 1, 1.0, boot)
    two = ql.compute_targets(REWARDS, 2, 1.0, boot)
    full = ql.compute_targets(REWARDS, None, 1.0)
    assert one == pytest.approx([1.5, 0.5, 2.0])
    assert two == pytest.approx([1.5, 2.0, 2.0])
    assert full == pytest.approx([3.0, 2.0, 2.0])


def test_unseen_state_value_is_zero_and_seen_negative_max_is_kept():
    assert ql.state_value({}) == 0.0
    assert ql.state_value({"a": -1.0, "b": -3.0}) == -1.0


def test_mean_and_const_updates():
    # mean: running average of targets 1, 0, 2 -> 1, 0.5, 1.0
    q = 1.0  # first visit: Q = y
    q = ql.updated_q(q, 0.0, visits=2, mode="mean")
    assert q == pytest.approx(0.5)
    q = ql.updated_q(q, 2.0, visits=3, mode="mean")
    assert q == pytest.approx(1.0)
    # const: Q + 0.1 (y - Q)
    assert ql.updated_q(1.0, 0.0, visits=2, mode="const", lr=0.1) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="update_mode"):
        ql.updated_q(1.0, 0.0, 2, mode="median")


def test_double_q_value_uses_argmax_of_one_table_valued_by_the_other():
    a = {"x": 5.0, "y": 1.0}
    b = {"x": 2.0, "y": 7.0}
    assert ql.double_q_value(a, b) == 2.0  # argmax_A = x, valued by B
    assert ql.double_q_value(b, a) == 1.0  # argmax_B = y, valued by A
    assert ql.double_q_value({}, b) == 0.0
    assert ql.double_q_value({"z": 1.0}, b) == 0.0  # B never saw z


def test_table_choice_is_reproducible_under_a_seed():
    seq1 = [ql.choose_table(np.random.default_rng(3)) for _ in range(1)]
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    s1 = [ql.choose_table(r1) for _ in range(20)]
    s2 = [ql.choose_table(r2) for _ in range(20)]
    assert s1 == s2 and set(s1) == {0, 1} and seq1[0] == s1[0]


def test_merged_q_is_visit_weighted():
    assert ql.merged_q(1.0, 1, 0.0, 3) == pytest.approx(0.25)


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        ql.compute_targets(REWARDS, None, 1.5)
    with pytest.raises(ValueError, match="n_step"):
        ql.compute_targets(REWARDS, 0)
    # the same checks guard ExperienceMemory's settings
    for check, bad, good in (
        (ql.check_gamma, -0.1, 0.0),
        (ql.check_n_step, 0, None),
        (ql.check_update_mode, "median", "const"),
    ):
        check(good)
        with pytest.raises(ValueError):
            check(bad)
