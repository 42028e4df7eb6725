"""Gymnasium's env checker on every registered env (unwrapped, seeded, render check on, warnings as errors)."""

import importlib.util
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from rlem_gym.registration import ENV_SPECS

#: extra make() kwargs per env id; every registered id gets at least the default configuration
VARIANTS = {
    "rlem_gym/WebShop-v0": [{"observation_mode": "text"}, {"observation_mode": "text_rich"}],
    "rlem_gym/WikiHow-v0": [{"task_set": "microcanon70"}],
    "rlem_gym/TextWorld-v0": [{"num_games": 1}],
}
#: env id -> the optional module it needs (the test skips without it)
NEEDS = {"rlem_gym/TextWorld-v0": "textworld"}
CASES = [(env_id, kw) for env_id in ENV_SPECS for kw in VARIANTS.get(env_id, [{}])]


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=[f"{i}-{'-'.join(map(str, k.values()))}" for i, k in CASES])
def test_check_env_passes_with_warnings_as_errors(env_id, kwargs):
    if env_id in NEEDS and importlib.util.find_spec(NEEDS[env_id]) is None:
        pytest.skip(f"{NEEDS[env_id]} is not installed (pip install rlem-gym[{NEEDS[env_id]}])")
    e = gym.make(env_id, render_mode="ansi", **kwargs).unwrapped
    e.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(e, skip_render_check=False)
    e.close()
    e.close()  # idempotent
