"""The one place that registers every rlem-gym environment id with Gymnasium.

Entry points are strings, so registering imports nothing heavy. Truncation belongs to the
registered ``max_episode_steps`` (Gymnasium's TimeLimit wrapper): override it with
``gym.make(id, max_episode_steps=...)``.
"""

from __future__ import annotations

import gymnasium as gym

#: id -> (entry point, default max_episode_steps). 15 steps is the Rememberer paper's cap.
ENV_SPECS: dict[str, tuple[str, int]] = {
    "rlem_gym/WebShop-v0": ("rlem_gym.envs.webshop.env:WebShopEnv", 15),
    "rlem_gym/WikiHow-v0": ("rlem_gym.envs.wikihow.env:WikiHowEnv", 15),
    # needs the textworld extra (pip install rlem-gym[textworld]); games are generated locally
    "rlem_gym/TextWorld-v0": ("rlem_gym.envs.textworld_env:TextWorldEnv", 30),
}


def register_envs() -> None:
    """Register every rlem-gym env id; safe to call more than once."""
    for env_id, (entry_point, max_steps) in ENV_SPECS.items():
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)
