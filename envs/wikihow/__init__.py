"""WikiHow (Mobile-Env task set) as a pure-Python Gymnasium text environment.

>>> import gymnasium as gym, rlem_gym
>>> env = gym.make("rlem_gym/WikiHow-v0", task_set="microcanon70")

Exports :class:`WikiHowEnv`, :func:`instruction_pattern` (instructions with slots masked, for
the memory's WikiHow matcher) and :class:`WikiHowOracle` (a scripted upper-bound policy).
"""

from rlem_gym.envs.wikihow.oracle import WikiHowOracle
from rlem_gym.envs.wikihow.patterns import instruction_pattern


def __getattr__(name: str):
    if name == "WikiHowEnv":  # lazy: keeps `import rlem_gym.envs.wikihow` light
        from rlem_gym.envs.wikihow.env import WikiHowEnv

        return WikiHowEnv
    raise AttributeError(name)


__all__ = ["WikiHowEnv", "WikiHowOracle", "instruction_pattern"]
