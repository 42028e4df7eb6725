"""One step of a finished episode, as the experience memory consumes it.

The agents build these while they act; :meth:`rlem_gym.memory.ExperienceMemory.update`
turns a list of them into Q-learning updates. The memory key of a step is
``(task, observation, instruction)``; the other fields are the prompt context stored with
the record (the spec's "last 5 actions, last reward, total reward").
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: how many past actions a prompt shows and a record keeps (the paper's "Last 5 Actions")
LAST_ACTIONS = 5


@dataclass(frozen=True)
class Step:
    """One transition (o_t, a_t, r_t) plus the context the prompt shows for o_t."""

    observation: str
    """The observation key o_t: the page text (WebShop) or the screen HTML (WikiHow)."""
    action: str
    """The action a_t that was executed, in the env's grammar."""
    reward: float
    """The reward r_t the env returned for a_t."""
    reason: str = ""
    """The LLM's reason text for a_t (stored in the action table)."""
    instruction: str = ""
    """The current instruction (WikiHow); empty for WebShop."""
    last_actions: tuple[str, ...] = ()
    """Up to 5 actions taken before o_t, oldest first."""
    last_reward: float = 0.0
    """The reward received just before o_t."""
    total_reward: float = 0.0
    """The reward accumulated before o_t."""
    available_actions: tuple[str, ...] = field(default=())
    """The valid actions at o_t, when the env lists them (WebShop); shown in exemplars."""
