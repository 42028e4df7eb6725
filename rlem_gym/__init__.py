"""rlem-gym: the Rememberer (RLEM) agent, WebShop and WikiHow as Gymnasium text environments.

Importing this package registers the environment ids and nothing else: no FAISS, torch,
spaCy or LLM SDK is imported until it is used.

>>> import gymnasium as gym, rlem_gym
>>> env = gym.make("rlem_gym/WebShop-v0")
"""

from rlem_gym.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__", "register_envs"]
