"""The situation an agent acts in, and one step of an episode, as the prompt and the memory share them.

A :class:`Situation` is what the agent sees at one step: the memory key ``(task, observation,
instruction)`` plus the prompt context the paper keeps with it ("last 5 actions, last reward,
total reward") and the valid actions. The same object is the prompt's new input and exemplar
input (:mod:`rlem_gym.prompts`), the situation of a :class:`Step` and the latest-visit context of
a memory :class:`~rlem_gym.memory.Record`.

The agents build steps while they act; :meth:`rlem_gym.memory.ExperienceMemory.update` turns a
list of them into Q-learning updates.
"""

from __future__ import annotations

from dataclasses import dataclass

#: how many past actions a prompt shows and a record keeps (the paper's "Last 5 Actions")
LAST_ACTIONS = 5


@dataclass(frozen=True)
class MemoryKey:
    """What a memory record is keyed by: the task g, the observation o and (WikiHow) the instruction."""

    task: str
    """The task: the WebShop goal instruction, or the WikiHow command lines."""
    observation: str
    """The observation text (page or screen)."""
    instruction: str = ""
    """The currently revealed instruction (WikiHow); empty for WebShop."""


@dataclass(frozen=True)
class Situation:
    """One situation: the memory key and the context a prompt shows with it."""

    task: str
    """The task g (WebShop goal instruction, WikiHow command lines)."""
    observation: str
    """The observation o: the page text (WebShop) or the screen HTML (WikiHow)."""
    instruction: str = ""
    """The current instruction (WikiHow); empty for WebShop."""
    last_actions: tuple[str, ...] = ()
    """Up to 5 actions taken before this observation, oldest first."""
    last_reward: float = 0.0
    """The reward received just before this observation."""
    total_reward: float = 0.0
    """The reward accumulated before this observation."""
    available_actions: tuple[str, ...] = ()
    """The valid actions here, when the env lists them (WebShop); shown in exemplars."""

    @property
    def key(self) -> MemoryKey:
        """The memory key ``(task, observation, instruction)``."""
        return MemoryKey(self.task, self.observation, self.instruction)

    @classmethod
    def at(cls, key: MemoryKey) -> "Situation":
        """The situation of ``key`` with no context (no past actions, zero rewards)."""
        return cls(key.task, key.observation, key.instruction)


@dataclass(frozen=True)
class Step:
    """One transition (o_t, a_t, r_t): the situation at o_t, the action taken and its reward."""

    situation: Situation
    """Where a_t was chosen: o_t, its memory key and the prompt's context."""
    action: str
    """The action a_t that was executed, in the env's grammar."""
    reward: float
    """The reward r_t the env returned for a_t."""
    reason: str = ""
    """The LLM's reason text for a_t (stored in the action table)."""

    @classmethod
    def of(
        cls,
        observation: str,
        action: str,
        reward: float,
        reason: str = "",
        *,
        task: str = "",
        instruction: str = "",
        last_actions: tuple[str, ...] = (),
        last_reward: float = 0.0,
        total_reward: float = 0.0,
        available_actions: tuple[str, ...] = (),
    ) -> "Step":
        """A step built field by field (the situation's task may stay empty: ``memory.update`` names it)."""
        situation = Situation(
            task, observation, instruction, tuple(last_actions), last_reward, total_reward, tuple(available_actions)
        )
        return cls(situation, action, reward, reason)
